"""Small helpers for talking tus to a real server with httpx."""

from __future__ import annotations

import base64
import hashlib
import importlib.util

import httpx
import pytest

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}


def metadata(**values: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


def create(client: httpx.Client, length: int | None, **headers: str) -> str:
    """POST a new upload and return its URL (a path)."""
    sent = {**TUS, **({"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"})}
    sent.update({key.replace("_", "-"): value for key, value in headers.items()})
    response = client.post("/api/tus/", headers=sent)
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def patch(client: httpx.Client, url: str, offset: int, data: bytes, **headers: str) -> httpx.Response:
    sent = {**OCTETS, "Upload-Offset": str(offset), **{key.replace("_", "-"): value for key, value in headers.items()}}
    return client.patch(url, headers=sent, content=data)


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def offset_of(client: httpx.Client, url: str) -> int:
    response = client.head(url, headers=TUS)
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def no_uploads_left(server) -> bool:
    """No upload in progress remains in the server's storage (local disk: ``.resumable``; S3: its prefix)."""
    if getattr(server, "backend", "local") == "s3":
        return not server.bucket.keys("resumable/") and not server.bucket.multipart_uploads()
    return not any((server.upload_dir / ".resumable").iterdir())


@pytest.fixture(autouse=True)
def tus_backend(request: pytest.FixtureRequest) -> None:
    """The tus suites run on every storage backend that can resume (the S3 one once it ships ``resumable``)."""
    if "storage_backend" in request.fixturenames and request.getfixturevalue("storage_backend") == "s3" \
            and importlib.util.find_spec("upload_service_s3.resumable") is None:
        pytest.skip("this S3 plugin has no resumable storage yet")
