"""Bad days: slow and vanishing clients, kill -9 mid-upload, concurrent writers, digests, a full disk."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import staging_entries, stored_files
from .faults import connect, request_head, wait_for
from .servers import start_server


@pytest.mark.local_storage
def test_idle_client_is_cut_off_and_its_partial_upload_removed(make_server):
    server = make_server(upload_idle_timeout="1s")
    sock = connect(server)
    sock.sendall(request_head(server, "/api/files/slow.bin", 10_000) + b"x" * 100)
    started = time.monotonic()
    answer = b""
    while b"}" not in answer and (chunk := sock.recv(65536)):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 10
    assert b"no data received" in answer
    assert wait_for(lambda: staging_entries(server.upload_dir) == [])
    assert stored_files(server.upload_dir) == []


@pytest.mark.local_storage
def test_client_that_disconnects_mid_upload_leaves_nothing(make_server):
    server = make_server()
    sock = connect(server)
    sock.sendall(request_head(server, "/api/files/cut.bin", 50_000_000) + os.urandom(3_000_000))
    assert wait_for(lambda: len(staging_entries(server.upload_dir)) == 1)
    sock.close()
    assert wait_for(lambda: staging_entries(server.upload_dir) == [])
    assert stored_files(server.upload_dir) == []
    assert server.client().get("/api/files").json()["files"] == []


@pytest.mark.local_storage
@pytest.mark.process
def test_kill_9_mid_upload_leaves_no_visible_file_and_cleanup_sweeps_staging(make_server, tmp_path):
    server = make_server()
    sock = connect(server)
    sock.sendall(request_head(server, "/api/files/crash.bin", 50_000_000) + os.urandom(3_000_000))
    assert wait_for(lambda: len(staging_entries(server.upload_dir)) == 1)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    sock.close()
    assert len(staging_entries(server.upload_dir)) == 1  # the crash leftover

    restarted = start_server(tmp_path, upload_dir=str(server.upload_dir), cleanup_interval="1s")
    try:
        assert restarted.client().get("/api/files").json()["files"] == []
        assert stored_files(server.upload_dir) == []
        assert wait_for(lambda: staging_entries(server.upload_dir) == [], timeout=15)
    finally:
        restarted.stop()


@pytest.mark.local_storage
@pytest.mark.process
def test_cleanup_command_sweeps_once(make_server):
    server = make_server()
    server.stop()  # before the leftover appears: the server's own first sweep, in the background, may run late
    leftover = server.upload_dir / ".staging" / "deadbeef"
    leftover.mkdir()
    (leftover / "data").write_bytes(b"half")
    old = time.time() - 60
    os.utime(leftover, (old, old))
    result = subprocess.run([sys.executable, "-m", "upload_service.cli", "cleanup"], env=server.env,
                            capture_output=True, text=True, check=True)
    assert '"removed": 1' in result.stdout
    assert not leftover.exists()


def test_same_filename_from_many_clients_gives_distinct_files(server):
    def upload(index: int) -> dict:
        return server.client().put("/api/files/same.txt", content=f"body {index}".encode()).json()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        files = list(pool.map(upload, range(32)))
    assert len({file["id"] for file in files}) == 32
    client = server.client()
    for index, file in enumerate(files):
        assert client.get(file["url"]).content == f"body {index}".encode()


@pytest.mark.process
def test_one_token_persisted_from_many_workers_at_once_persists_exactly_once(make_server):
    server = make_server(workers="3")
    client = server.client()
    statuses = []
    for round_ in range(3):
        temporary = client.put("/api/upload_temporary", json=[{"filename": f"r{round_}.txt", "content": "aGk="}])
        token = temporary.json()["files"][0]["token"]

        def persist(_: int, token: str = token) -> int:
            return server.client().post("/api/persist", json={"tokens": [token]}).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outcome = sorted(pool.map(persist, range(8)))
        statuses.append(outcome)
    for outcome in statuses:
        assert outcome == [201] + [409] * 7, outcome
    assert len(client.get("/api/files").json()["files"]) == 3


def test_delete_racing_downloads_never_serves_corrupt_bytes(server):
    client = server.client()
    data = os.urandom(8 * 1024 * 1024)
    expected = hashlib.sha256(data).hexdigest()
    file = client.put("/api/files/race.bin", content=data).json()

    under_way = threading.Event()

    def download(_: int) -> str:
        under_way.set()
        response = server.client().get(file["url"])
        if response.status_code == 404:
            return "gone"
        assert response.status_code == 200
        return "ok" if hashlib.sha256(response.content).hexdigest() == expected else "CORRUPT"

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        downloads = [pool.submit(download, i) for i in range(24)]
        assert under_way.wait(10)
        assert client.delete(f"/api/files/{file['id']}").status_code == 204
        outcomes = [future.result() for future in downloads]
    assert "CORRUPT" not in outcomes
    assert client.get(file["url"]).status_code == 404


@pytest.mark.parametrize("header", ["Content-Digest", "Digest", "Content-MD5"])
def test_client_digests_are_verified(make_server, header):
    server = make_server()
    data = b"digest me" * 1000
    good = {
        "Content-Digest": f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:",
        "Digest": f"SHA-256={base64.b64encode(hashlib.sha256(data).digest()).decode()}",
        "Content-MD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
    }[header]
    client = server.client()
    wrong = client.put("/api/files/d.bin", content=data + b"!", headers={header: good})
    assert wrong.status_code == 400 and "does not match" in wrong.json()["detail"]
    assert stored_files(server) == [] and staging_entries(server) == []
    assert client.put("/api/files/d.bin", content=data, headers={header: good}).status_code == 201


@pytest.fixture
def small_filesystem(tmp_path) -> Path:
    mount = tmp_path / "small-fs"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip()}); the full-disk test needs one")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.local_storage
def test_full_disk_is_507_and_the_service_keeps_serving(make_server, small_filesystem):
    server = make_server(upload_dir=str(small_filesystem / "uploads"))
    client = server.client()
    kept = client.put("/api/files/small.bin", content=b"k" * 1000).json()
    full = client.put("/api/files/huge.bin", content=os.urandom(20 * 1024 * 1024))
    assert full.status_code == 507
    assert full.headers["content-type"] == "application/problem+json"
    assert staging_entries(server.upload_dir) == []
    assert client.get(kept["url"]).content == b"k" * 1000
    assert client.put("/api/files/after.bin", content=b"still works").status_code == 201
