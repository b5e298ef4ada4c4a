"""Small helpers for talking tus to a real server with httpx."""

from __future__ import annotations

import base64
import hashlib

import httpx

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
