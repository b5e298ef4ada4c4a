"""What makes a change survive a power cut, by ``DURABILITY``: ``GroupCommit`` (``full``) or ``WriteBack``
(``relaxed``). Both are called the same way, in the storage's threads: ``file(fd)`` before a file is renamed
into sight, ``folder(path)`` after the rename, before the client hears of it.

``full``, one flush for many uploads: each fsync of a new file on ext4 commits the journal, and commits of
concurrent fsyncs only partly overlap. A thread that needs a flush queues it; the first to find nobody flushing
becomes the leader and flushes every queued request while the others wait, then wakes them (the group commit
of databases and of git's batch mode). It first starts the writeback of every queued file, so their blocks are
allocated in one journal transaction; the first fsync then commits that transaction for all of them, and the
fsyncs after it find their change committed already and only wait for their own data (and the disk's cache
flush). Requests queued while a leader flushes form the next group.

``relaxed``: no flush at all. The writeback of a file is only started (``sync_file_range``, no wait) before its
rename: ext4 then allocates the file's blocks before the rename is journaled, and in its default ``data=ordered``
mode writes the data before it commits that journal entry, so a power cut may lose recent uploads whole but not
leave one visible and short. The reader checks each object's size against its record besides.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .durable import storage_error
from .writeback import start_writeback

Durability = Literal["full", "relaxed"]


class WriteBack:
    """``DURABILITY=relaxed``: write-back is left to the kernel; nothing waits for the disk."""

    durable = False

    def file(self, fd: int) -> None:
        start_writeback(fd, 0, 0)  # the whole file: its blocks get allocated now, before the rename

    def folder(self, path: Path) -> None:
        return None


@dataclass(eq=False)
class _Request:
    fd: int | None  # a file to flush, or
    path: Path | None  # a folder whose entries to flush
    done: bool = False
    error: OSError | None = None


class GroupCommit:
    """``DURABILITY=full``: every ``file``/``folder`` returns once the change is on disk, flushed in groups.

    ``sync`` is what flushes one descriptor (``os.fsync``; a test counts calls through it). ``groups`` and
    ``requests`` count the flushes led and the requests they covered.
    """

    durable = True

    def __init__(self, sync: Callable[[int], None] = os.fsync) -> None:
        self.sync = sync
        self.groups = 0
        self.requests = 0
        self._changed = threading.Condition()
        self._queue: list[_Request] = []
        self._flushing = False

    @property
    def waiting(self) -> int:
        """Requests queued for the next group (a test waits for a group to fill)."""
        with self._changed:
            return len(self._queue)

    def file(self, fd: int) -> None:
        self._flush(_Request(fd, None))

    def folder(self, path: Path) -> None:
        self._flush(_Request(None, path))

    def _flush(self, request: _Request) -> None:
        group: list[_Request] = []
        with self._changed:
            self._queue.append(request)
            while self._flushing and not request.done:
                self._changed.wait()
            if not request.done:  # nobody is flushing: lead the group of everything queued
                group, self._queue, self._flushing = self._queue, [], True
        if group:
            try:
                self._flush_group(group)
            except BaseException as error:  # none of the group may believe itself flushed
                for queued in group:
                    queued.error = queued.error or OSError(errno.EIO, f"the flush failed: {error!r}")
                raise
            finally:
                with self._changed:
                    for queued in group:
                        queued.done = True
                    self._flushing = False
                    self.groups += 1
                    self.requests += len(group)
                    self._changed.notify_all()
        if request.error is not None:
            raise storage_error(request.error) from request.error

    def _flush_group(self, group: list[_Request]) -> None:
        """Start every file's writeback, then flush each file, then each folder once."""
        files = [request for request in group if request.fd is not None]
        for request in files:
            start_writeback(request.fd, 0, 0)  # type: ignore[arg-type]
        for request in files:
            try:
                self.sync(request.fd)  # type: ignore[arg-type]
            except OSError as error:
                request.error = error
        folders: dict[Path, list[_Request]] = {}
        for request in group:
            if request.path is not None:
                folders.setdefault(request.path, []).append(request)
        for path, requests in folders.items():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    self.sync(fd)
                finally:
                    os.close(fd)
            except OSError as error:
                for request in requests:
                    request.error = error


def flusher(durability: Durability) -> GroupCommit | WriteBack:
    """The flusher of a storage whose ``DURABILITY`` is ``durability``."""
    return GroupCommit() if durability == "full" else WriteBack()
