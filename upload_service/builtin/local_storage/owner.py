"""The one lock that keeps every staging folder of an open storage from the sweep.

Staging folders are named after the storage that makes them (``.staging/<owner>-<random>``, see ``Layout``),
and while a storage is open it holds an flock on ``.owners/<owner>``. The sweep spares the folders of every
owner whose lock is held, and removes those of owners that are gone (a process that died: the kernel drops its
locks) along with their lock files. So a staged file needs no descriptor of its own to show it is in use: a
finished file waiting for the rest of its batch is closed (one descriptor per staged file let a single request
of many files take every descriptor the process had). Blocking: call it in the storage's threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from .durable import storage_error
from .layout import Layout


class OwnerLock:
    """The flock on ``.owners/<layout.owner>``, held from ``acquire`` to ``release`` (an open storage)."""

    def __init__(self, layout: Layout) -> None:
        self._path = layout.owners / layout.owner
        self._fd: int | None = None

    def acquire(self) -> None:
        """Create the lock file and lock it (the sweep leaves a file younger than its grace alone meanwhile)."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o640)
        except OSError as error:
            raise storage_error(error) from error
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file, then let go of it: a writer still staging now looks abandoned to the sweep."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            os.close(fd)


def held(path: os.PathLike[str] | str) -> bool:
    """Whether a live process holds the flock on ``path`` (an owner's lock, or an older writer's ``data``)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
