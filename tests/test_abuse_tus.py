"""Abuse of tus by a signed-in user (issue 18, finding 4), each attack run against a real server.

HEAD took the upload's lock before checking whose upload it is, so another user's HEAD cut its owner's PATCH
off, a HEAD on any unknown id left a lock file behind, and a tus id could be the name of a usage ledger lock;
lock files piled up for good.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import time
from pathlib import Path

from .faults import connect, read_answer, received, wait_for
from .servers import TOKENS, Server
from .tus import TUS, create, patch


def lock_files(server: Server) -> list[Path]:
    """What the file locker left under ``UPLOAD_DIR/.locks`` (lock and release files, any depth)."""
    folder = server.upload_dir / ".locks"
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else []


def test_someone_elses_head_does_not_cut_the_owners_patch(make_server) -> None:
    """Attack: bob sends HEAD to alice's upload URL while alice's PATCH streams; the HEAD asked for the lock
    first, so alice's PATCH was told to stop (423). Instead: bob gets 404 and alice's PATCH completes."""
    server = make_server(upload_idle_timeout="30s")
    data = os.urandom(400_000)
    alice = server.client()
    url = create(alice, len(data))
    host = server.url.removeprefix("http://")
    sock = connect(server, timeout=20)
    try:
        sock.sendall((f"PATCH {url} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
                      f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                      f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
                     + data[:200_000])
        assert wait_for(lambda: received(sock))
        assert server.client("bob").head(url, headers=TUS).status_code == 404
        sock.sendall(data[200_000:])
        answer = read_answer(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 204"), answer[:200]
    assert f"upload-offset: {len(data)}".encode() in answer.lower()


def test_heads_on_unknown_ids_leave_no_lock_files(make_server) -> None:
    """Attack: HEAD on 300 well-formed ids nobody has; each left a lock file that no sweep removed.
    Instead: an unknown id is 404 before any lock is taken, and nothing is left on disk."""
    server = make_server()
    client = server.client()
    for _ in range(300):
        assert client.head(f"/api/tus/{secrets.token_urlsafe(18)}", headers=TUS).status_code == 404
    assert lock_files(server) == []


def test_head_on_a_ledger_lock_name_takes_no_lock(make_server) -> None:
    """Attack: ``HEAD /api/tus/usage-<owner hash>`` took the lock of that owner's usage ledger (tus ids and
    ledger locks shared one namespace), slowing their uploads. Instead: 404 and no lock taken at all.

    Without quotas the ledger itself never locks, so any lock file that appears was taken by the HEAD.
    """
    server = make_server()
    victim = hashlib.sha256(b"token:alice").hexdigest()[:32]
    for name in (f"usage-{victim}", f"usage-{victim[:18]}"):  # as it is, and cut to a tus id's length
        for user in ("bob", "alice"):
            assert server.client(user).head(f"/api/tus/{name}", headers=TUS).status_code == 404
    assert lock_files(server) == []


def test_stale_lock_files_are_swept(make_server) -> None:
    """Attack: lock files piled up for good (one per upload id ever locked, any id a HEAD named). Instead: the
    cleanup sweep removes lock files that nobody holds once they are older than a grace period; a held one
    stays."""
    server = make_server(cleanup_interval="1s")
    client = server.client()
    url = create(client, 3)
    assert patch(client, url, 0, b"abc").status_code == 204  # the upload's lock file stays behind
    folder = server.upload_dir / ".locks"
    planted = [folder / f"{secrets.token_urlsafe(18)}.lock" for _ in range(3)]  # as older versions left them
    for path in planted:
        path.touch()
    assert len(lock_files(server)) >= 4
    held = folder / "held.lock"
    fd = os.open(held, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        old = time.time() - 3600
        for path in lock_files(server):
            os.utime(path, (old, old))
        assert wait_for(lambda: lock_files(server) == [held], timeout=5), lock_files(server)
    finally:
        os.close(fd)
    assert client.head(url, headers=TUS).status_code == 200  # the upload itself is untouched
