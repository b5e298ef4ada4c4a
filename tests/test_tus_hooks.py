"""tus uploads go through the same plugin hooks as every other path, and refused ones leave nothing."""

from __future__ import annotations

import hashlib
import json

from .conftest import resumable_entries, stored_files
from .faults import wait_for
from .tus import TUS, create, metadata, no_uploads_left, patch, tus_backend  # noqa: F401 (tus_backend: autouse fixture)


def test_validate_upload_refuses_before_anything_is_stored(make_server) -> None:
    server = make_server(plugins="tests.plugins.tus_rules")
    client = server.client()
    response = client.post("/api/tus/", headers={**TUS, "Upload-Length": "3",
                                                 "Upload-Metadata": metadata(filename="setup.exe")})
    assert response.status_code == 422
    assert response.json()["detail"] == "no programs, please"
    assert resumable_entries(server) == []


def test_process_upload_refusal_removes_file_and_upload(make_server) -> None:
    server = make_server(plugins="tests.plugins.tus_rules")
    client = server.client()
    url = create(client, 10, Upload_Metadata=metadata(filename="bad.bin"))
    assert patch(client, url, 0, b"VIRUS").status_code == 204
    refused = patch(client, url, 5, b"!!!!!")
    assert refused.status_code == 422 and refused.headers["Tus-Resumable"] == "1.0.0"
    assert stored_files(server) == []
    assert client.head(url, headers=TUS).status_code == 404
    assert no_uploads_left(server)
    assert not (server.upload_dir / "persisted.log").exists()


def test_process_and_persisted_hooks_see_the_finished_file(make_server) -> None:
    server = make_server(plugins="tests.plugins.tus_rules")
    client = server.client()
    url = create(client, None, Upload_Metadata=metadata(filename="good.txt"))
    assert patch(client, url, 0, b"hello ").status_code == 204
    done = patch(client, url, 6, b"world", Upload_Length="11")
    file = client.get(f"/api/files/{done.headers['Upload-File-Id']}").json()
    assert file["metadata"] == {"checked": True, "size_seen": 11}
    log = server.upload_dir / "persisted.log"
    assert wait_for(log.exists)  # upload_persisted runs after the answer
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert logged == [{"id": file["id"], "sha256": hashlib.sha256(b"hello world").hexdigest()}]


def test_a_deferred_length_is_validated_when_it_becomes_known(make_server) -> None:
    server = make_server(plugins="tests.plugins.tus_rules")
    client = server.client()
    url = create(client, None, Upload_Metadata=metadata(filename="growing.bin"))
    assert patch(client, url, 0, b"x" * 1000).status_code == 204
    refused = patch(client, url, 1000, b"x" * 1000, Upload_Length="200000")
    assert refused.status_code == 413 and refused.json()["detail"] == "too big for this house"
    assert client.head(url, headers=TUS).status_code == 404
    assert resumable_entries(server) == []
