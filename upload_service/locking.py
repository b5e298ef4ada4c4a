"""One writer per upload across every worker, and a way for a newer request to make a stale one let go.

A client whose connection died silently comes back with HEAD or PATCH while the server still runs its old
PATCH (waiting for bytes that never come). The newer request asks the holder to release; the holder stops
at once (what it stored so far counts) and the newer request proceeds. Two clients fighting over one upload
therefore interrupt each other instead of waiting: the latest request wins, as in tusd.

A locker is chosen by ``LOCKER`` among those registered through the ``register_lockers`` hook. Lock names live
in namespaces, one per part of the service that locks, so no name a client picks can be another part's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import Problem
from .storage import check_key

SWEEP_GRACE = 300.0  # seconds a lock file nobody holds is kept before the sweep removes it
_NAMESPACE = re.compile(r"[a-z][a-z0-9_]{0,31}")


class UploadLock:
    """Held while one request works on an upload.

    ``release_requested`` is set when another request wants the upload: stop soon and leave the block.
    Call ``forget()`` after deleting the upload so the locker may drop its own traces.

    A locker that must watch for such requests may pass ``watch``: it is called the first time the holder asks
    for ``release_requested``, so holders that never ask (an ``Idempotency-Key``, a usage ledger's change: every
    small upload has one or both) cost the locker no watching.
    """

    def __init__(self, watch: Callable[[UploadLock], object] | None = None) -> None:
        self._release_requested = asyncio.Event()
        self._watch = watch
        self.forgotten = False

    @property
    def release_requested(self) -> asyncio.Event:
        if self._watch is not None:
            watch, self._watch = self._watch, None
            watch(self)
        return self._release_requested

    def forget(self) -> None:
        self.forgotten = True


@runtime_checkable
class Locker(Protocol):
    """What ``register_lockers`` factories return.

    Locks are named by a ``namespace`` (the part of the service that locks: ``tus``, ``usage``, a plugin's own)
    and a ``name`` within it. Each namespace is a space of its own, so a name a client picks (a tus upload id)
    can never be the lock of another part (an owner's usage ledger).
    """

    def hold(self, namespace: str, name: str, *,
             take_over: bool = True) -> AbstractAsyncContextManager[UploadLock]:
        """Hold the lock ``name`` of ``namespace`` for the block.

        If someone holds it and ``take_over`` is true, ask them to release and wait a while; raise
        ``LockBusy`` (423) when the lock cannot be had (at once when ``take_over`` is false).
        """

    async def sweep(self) -> int:
        """Remove what the locker left behind for locks nobody holds any more (the cleanup sweep calls it);
        return how many were removed."""


def check_lock_name(namespace: str, name: str) -> None:
    """A namespace is a short lowercase word, a name a storage-safe key segment (no slash, no dot, no colon)."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(f"not a lock namespace: {namespace!r}")
    check_key(name)
    if "/" in name:
        raise ValueError(f"not a lock name: {name!r}")


class ExclusiveSections:
    """Read-modify-write sections by name, exclusive across every worker and instance (``service.exclusive``).

    Sections of one process queue on an in-process lock first, so only sections of different processes meet
    at the locker, whose waiting is polling (a few tens of milliseconds a turn).
    """

    def __init__(self, locker: Locker) -> None:
        self._locker = locker
        self._queues: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @contextlib.asynccontextmanager
    async def __call__(self, namespace: str, name: str) -> AsyncIterator[None]:
        key = f"{namespace}:{name}"
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Lock()
        async with queue, self._locker.hold(namespace, name):
            yield


class LockBusy(Problem):
    """The lock is held and could not be had in time: the client gets 423, which tus clients retry."""

    def __init__(self, detail: str = "another request is working on this upload; try again shortly") -> None:
        super().__init__(423, detail, title="Locked", reason="tus_locked")


class FileLocker:
    """``LOCKER=file``: ``flock`` on ``<folder>/<namespace>/<name>.lock``, release requests as ``.release`` files.

    flock locks belong to an open file, so they exclude other workers and other requests of the same worker
    alike, and the kernel drops them when a worker dies. The holder polls for the release file between
    reads of the body; a request that wants the lock creates it and retries until ``wait`` seconds passed.

    Lock files stay after their lock is let go (unless the holder ``forget``s it); ``sweep`` removes those that
    nobody holds once they are ``grace`` seconds old. A lock file is only ever unlinked by someone holding the
    flock on the very file its path names (the holder that forgets, or the sweep), and whoever takes a lock checks
    that the file it locked is still the one its path names, so a lock taken on a file unlinked meanwhile is
    dropped and taken again on the new file: two holders never hold one name.
    """

    def __init__(self, folder: Path, *, wait: float = 10.0, poll: float = 0.05, watch: float = 0.1,
                 grace: float = SWEEP_GRACE) -> None:
        self.folder = Path(folder)  # made by the first lock: a service that never locks leaves no folder
        self.wait = wait
        self.poll = poll
        self.watch = watch
        self.grace = grace

    def _paths(self, namespace: str, name: str) -> tuple[Path, Path]:
        check_lock_name(namespace, name)
        return self.folder / namespace / f"{name}.lock", self.folder / namespace / f"{name}.release"

    def _try_lock(self, path: Path) -> int | None:
        """An fd holding the lock on ``path``, or None if someone else holds it. The namespace's folder is made
        by the first lock in it (looking for it before each lock was a system call on the event loop)."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if not _names(path, fd):  # unlinked meanwhile by a holder that forgot it, or by the sweep: lock the new one
            os.close(fd)
            return self._try_lock(path)
        return fd

    async def _acquire(self, namespace: str, name: str, take_over: bool) -> int:
        path, release = self._paths(namespace, name)
        deadline = time.monotonic() + self.wait
        while (fd := self._try_lock(path)) is None:
            if not take_over or time.monotonic() > deadline:
                raise LockBusy()
            release.touch()
            await asyncio.sleep(self.poll)
        release.unlink(missing_ok=True)
        return fd

    async def _watch(self, release: Path, lock: UploadLock) -> None:
        # another process (or worker) makes the file: nothing to await; one stat of a small folder does not block
        while not release.exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(self.watch)
        lock.release_requested.set()

    @contextlib.asynccontextmanager
    async def hold(self, namespace: str, name: str, *, take_over: bool = True) -> AsyncIterator[UploadLock]:
        fd = await self._acquire(namespace, name, take_over)
        paths = self._paths(namespace, name)
        watchers: list[asyncio.Task[None]] = []
        lock = UploadLock(lambda lock: watchers.append(asyncio.create_task(self._watch(paths[1], lock))))
        try:
            yield lock
        finally:
            for watcher in watchers:
                watcher.cancel()
            if lock.forgotten:
                for path in paths:
                    path.unlink(missing_ok=True)
            os.close(fd)

    async def sweep(self) -> int:
        return await asyncio.to_thread(self._sweep, time.time())

    def _sweep(self, now: float) -> int:
        """Remove the lock files nobody holds that are older than ``grace``, and release files left alone.

        Lock files directly in the folder are those of versions without namespaces: swept alike.
        """
        if not self.folder.is_dir():
            return 0
        removed = 0
        for path in [*self.folder.glob("*.lock"), *self.folder.glob("*/*.lock")]:
            removed += _remove_if_free(path, now - self.grace)
        for path in [*self.folder.glob("*.release"), *self.folder.glob("*/*.release")]:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < now - self.grace and not path.with_suffix(".lock").exists():
                    path.unlink()
                    removed += 1
        return removed


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _remove_if_free(path: Path, older_than: float) -> bool:
    """Unlink the lock file ``path`` if it was made before ``older_than`` and nobody holds it.

    The flock is taken (never waited for) before the unlink and kept until after it, so nobody holds the file
    while it goes; a request that opened it just before locks a file without a name and takes a new one.
    """
    try:
        fd = os.open(path, os.O_RDONLY)  # never O_CREAT: the sweep makes nothing
    except FileNotFoundError:
        return False
    try:
        if os.fstat(fd).st_mtime >= older_than:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if not _names(path, fd):  # replaced since it was opened: the new file is someone else's
            return False
        path.with_suffix(".release").unlink(missing_ok=True)
        path.unlink()
        return True
    finally:
        os.close(fd)
