"""Abuse of tus by a signed-in user (issue 18, finding 4), each attack run against a real server.

Lock files piled up for good: the file locker leaves one per name it ever locked, and nothing removed them.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from pathlib import Path

from .faults import wait_for
from .servers import Server
from .tus import TUS, create, patch


def lock_files(server: Server) -> list[Path]:
    """What the file locker left under ``UPLOAD_DIR/.locks`` (lock and release files, any depth)."""
    folder = server.upload_dir / ".locks"
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else []


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
