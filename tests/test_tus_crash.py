"""A tus upload whose instance died mid-commit: finishing it again adopts the file it already became.

The window (found by ``tests/perf/multi_instance_load.py``): the file's object is placed and visible, but the
instance is killed before the upload notes ``committed`` and its file id. The test leaves the stored upload
exactly as such an instance would (the key noted as ``committing``, nothing after it), then sends HEAD.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

from .conftest import stored_files
from .servers import Server
from .tus import TUS, create, metadata, patch


def _rewind_to_the_crash(server: Server, upload_id: str) -> str:
    """Undo what a commit does after the file's object is written; returns the key of that object."""
    if server.bucket is not None:
        client, bucket = server.bucket.server.client(), server.bucket.name
        name = f"{server.bucket.prefix}resumable/{upload_id}/record"
        record = json.loads(client.get_object(Bucket=bucket, Key=name)["Body"].read())
        key = record["committed"]
        record.update(committed=None, committing=key)
        record["info"]["file_id"] = None
        client.put_object(Bucket=bucket, Key=name, Body=json.dumps(record).encode())
        return key
    folder = server.upload_dir / ".resumable" / upload_id
    record = json.loads((folder / "record.json").read_text())
    key = record["committed"]
    os.link(server.upload_dir / "objects" / key, folder / "data")  # unlinked only after the note
    record.update(committed=None, committing=key)
    record["info"]["file_id"] = None
    (folder / "record.json").write_text(json.dumps(record))
    return key


def test_finishing_again_after_a_crash_mid_commit_adopts_the_file(make_server: Callable[..., Server]) -> None:
    server = make_server()
    client = server.client()
    data = b"committed once " * 100
    url = create(client, len(data), Upload_Metadata=metadata(filename="once.txt"))
    done = patch(client, url, 0, data)
    assert done.status_code == 204, done.text
    file_id = done.headers["Upload-File-Id"]
    key = _rewind_to_the_crash(server, url.rsplit("/", 1)[-1])
    assert key.endswith(f"/{file_id}") and len(stored_files(server, "files/")) == 1

    for _ in range(2):  # the first HEAD adopts the file, the next finds it noted
        head = client.head(url, headers=TUS)
        assert head.status_code == 200
        assert head.headers["Upload-File-Id"] == file_id and head.headers["Upload-Offset"] == str(len(data))
        assert len(stored_files(server, "files/")) == 1
    assert patch(client, url, len(data), b"").headers["Upload-File-Id"] == file_id
    files = client.get("/api/files").json()
    assert [file["id"] for file in files["files"]] == [file_id]
    assert files["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get(f"/api/files/{file_id}/content").content == data
    assert client.delete(url, headers=TUS).status_code == 204  # the upload goes, the file it became stays
    assert client.get(f"/api/files/{file_id}/content").content == data
