"""The original service's API: base64 JSON on PUT /api/upload and /api/upload_temporary, curl commands unchanged."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

from .servers import TOKENS


def _original_curl(server, route: str, path: Path) -> dict:
    """The command from the original README, with the host and token filled in."""
    command = (
        f'curl -s -X PUT {server.url}/api/{route} -H "Authorization: Bearer {TOKENS["alice"]}" '
        f'-H "Content-type: application/json" '
        f'-d "[{{\\"filename\\": \\"{path.name}\\", \\"content\\": \\"$(base64 -w 0 {path})\\"}}]"'
    )
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_original_curl_upload_stores_the_file(server, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# hello from the original README\n" * 50)
    answer = _original_curl(server, "upload", readme)
    (file,) = answer["files"]
    assert file["filename"] == "README.md"
    assert file["size"] == readme.stat().st_size
    assert file["sha256"] == hashlib.sha256(readme.read_bytes()).hexdigest()
    assert file["temporary"] is False and file["expires_at"] is None
    content = server.client().get(file["url"])
    assert content.status_code == 200 and content.content == readme.read_bytes()


def test_original_curl_temporary_upload_returns_a_token(server, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_bytes(b"temporary bytes")
    (file,) = _original_curl(server, "upload_temporary", readme)["files"]
    assert file["temporary"] is True
    assert file["token"] and file["expires_at"]


def test_json_batch_of_several_files_and_post_method(server):
    items = [{"filename": f"f{i}.bin", "content": base64.b64encode(bytes([i]) * (i * 100)).decode()} for i in range(4)]
    response = server.client().post("/api/upload", json=items)
    assert response.status_code == 201
    files = response.json()["files"]
    assert [f["filename"] for f in files] == ["f0.bin", "f1.bin", "f2.bin", "f3.bin"]
    assert [f["size"] for f in files] == [0, 100, 200, 300]  # an empty file is a valid upload


def test_line_wrapped_base64_is_accepted(server):
    data = bytes(range(256)) * 10
    wrapped = base64.encodebytes(data).decode()  # 76-character lines, as plain `base64` prints
    response = server.client().put("/api/upload", json=[{"filename": "wrapped.bin", "content": wrapped}])
    assert response.status_code == 201
    assert response.json()["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
