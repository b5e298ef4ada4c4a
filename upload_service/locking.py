"""One writer per upload across every worker, and a way for a newer request to make a stale one let go.

A client whose connection died silently comes back with HEAD or PATCH while the server still runs its old
PATCH (waiting for bytes that never come). The newer request asks the holder to release; the holder stops
at once (what it stored so far counts) and the newer request proceeds. Two clients fighting over one upload
therefore interrupt each other instead of waiting: the latest request wins, as in tusd.

A locker is chosen by ``LOCKER`` among those registered through the ``register_lockers`` hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import Problem
from .storage import check_key


class UploadLock:
    """Held while one request works on an upload.

    ``release_requested`` is set when another request wants the upload: stop soon and leave the block.
    Call ``forget()`` after deleting the upload so the locker may drop its own traces.
    """

    def __init__(self) -> None:
        self.release_requested = asyncio.Event()
        self.forgotten = False

    def forget(self) -> None:
        self.forgotten = True


@runtime_checkable
class Locker(Protocol):
    """What ``register_lockers`` factories return."""

    def hold(self, upload_id: str, *, take_over: bool = True) -> AbstractAsyncContextManager[UploadLock]:
        """Hold the upload's lock for the block.

        If someone holds it and ``take_over`` is true, ask them to release and wait a while; raise
        ``LockBusy`` (423) when the lock cannot be had (at once when ``take_over`` is false).
        """


class LockBusy(Problem):
    """The lock is held and could not be had in time: the client gets 423, which tus clients retry."""

    def __init__(self, detail: str = "another request is working on this upload; try again shortly") -> None:
        super().__init__(423, detail, title="Locked", reason="tus_locked")


class FileLocker:
    """``LOCKER=file``: ``flock`` on ``<folder>/<id>.lock``, release requests as ``<id>.release`` files.

    flock locks belong to an open file, so they exclude other workers and other requests of the same worker
    alike, and the kernel drops them when a worker dies. The holder polls for the release file between
    reads of the body; a request that wants the lock creates it and retries until ``wait`` seconds passed.
    """

    def __init__(self, folder: Path, *, wait: float = 10.0, poll: float = 0.05, watch: float = 0.1) -> None:
        self.folder = Path(folder)  # made by the first lock: a service that never locks leaves no folder
        self.wait = wait
        self.poll = poll
        self.watch = watch

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        check_key(upload_id)
        if "/" in upload_id:
            raise ValueError(f"not an upload id: {upload_id!r}")
        return self.folder / f"{upload_id}.lock", self.folder / f"{upload_id}.release"

    def _try_lock(self, path: Path) -> int | None:
        """An fd holding the lock on ``path``, or None if someone else holds it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:  # the file may have been unlinked by a holder that forgot the upload: then lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return self._try_lock(path)
        return fd

    async def _acquire(self, upload_id: str, take_over: bool) -> int:
        path, release = self._paths(upload_id)
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait
        while (fd := self._try_lock(path)) is None:
            if not take_over or time.monotonic() > deadline:
                raise LockBusy()
            release.touch()
            await asyncio.sleep(self.poll)
        release.unlink(missing_ok=True)
        return fd

    async def _watch(self, upload_id: str, lock: UploadLock) -> None:
        release = self._paths(upload_id)[1]
        while not release.exists():  # noqa: ASYNC110 - another process (or worker) makes the file: nothing to await
            await asyncio.sleep(self.watch)
        lock.release_requested.set()

    @contextlib.asynccontextmanager
    async def hold(self, upload_id: str, *, take_over: bool = True) -> AsyncIterator[UploadLock]:
        fd = await self._acquire(upload_id, take_over)
        lock = UploadLock()
        watcher = asyncio.create_task(self._watch(upload_id, lock))
        try:
            yield lock
        finally:
            watcher.cancel()
            if lock.forgotten:
                for path in self._paths(upload_id):
                    path.unlink(missing_ok=True)
            os.close(fd)
