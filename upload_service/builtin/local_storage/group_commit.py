"""What makes a change survive a power cut, by ``DURABILITY``: ``GroupCommit`` (``full``) or ``WriteBack``
(``relaxed``). Both are called the same way, in the storage's threads: ``data(fd)`` before a file is renamed into
sight, ``commit(path)`` after a change under ``path`` (a rename, a new record), before the client hears of it.

``full``, one commit for many uploads. Each fsync of a new file on ext4 commits the file system's journal, and
so does every fsync of a folder, even one right after another's. So a file's bytes are only written out and
waited for (``sync_file_range``, no journal commit), in the thread of its own upload; then, once it is renamed
into place, its commit joins a group: the first thread to find nobody committing leads, and fsyncs each folder
that the requests queued meanwhile name, once (one journal commit for the uploads of one owner), while the
others wait, then wakes them: the group commit of databases and of git's batch mode. Requests queued while a
leader commits form the next group. That a folder's fsync also makes the renamed file's size, blocks and record
durable holds on file systems that log metadata in order, xfs and ext4 with its journal (a commit covers every
change made before it); elsewhere, an ext4 made without a journal among them, each file is fsynced on its own
before its rename, as before (``in_order``). Not ``syncfs(2)``,
which would need one call per group whatever the folders: it flushes everything dirty on the file system, and
with other programs writing to the same disk one call took seconds here (5 commits/s against ~800).

``relaxed``: no flush at all. A file's writeback is only started (``sync_file_range``, no wait) before its
rename: ext4 then allocates its blocks before the rename is journaled, and in its default ``data=ordered`` mode
writes the data before it commits that journal entry, so a power cut may lose recent uploads whole but not leave
one visible and short. The reader checks each object's size against its record besides.
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
from .writeback import start_writeback, write_out

Durability = Literal["full", "relaxed"]


class WriteBack:
    """``DURABILITY=relaxed``: write-back is left to the kernel; nothing waits for the disk."""

    durable = False
    in_order = True  # nothing is flushed: there is no order to keep

    def data(self, fd: int) -> None:
        start_writeback(fd, 0, 0)  # the whole file: its blocks get allocated now, before the rename

    def commit(self, path: Path) -> None:
        return None


@dataclass(eq=False)
class _Request:
    path: Path
    done: bool = False
    error: OSError | None = None


class GroupCommit:
    """``DURABILITY=full``: ``data`` returns once a file's bytes are on the disk, ``commit`` once every change made
    before it is, committed in groups. ``in_order``: whether a commit also makes durable every change made before
    it anywhere on the file system (xfs, ext4 with its journal: ``logs_in_order``).

    ``sync`` flushes one open folder (``os.fsync``; a test counts calls through it). ``groups`` and ``requests``
    count the commits led and the requests they covered.
    """

    durable = True

    def __init__(self, in_order: bool = True) -> None:
        self.sync: Callable[[int], None] = os.fsync
        self.in_order = in_order
        self.groups = 0
        self.requests = 0
        self._changed = threading.Condition()
        self._queue: list[_Request] = []
        self._committing = False

    @property
    def waiting(self) -> int:
        """Requests queued for the next group (a test waits for a group to fill)."""
        with self._changed:
            return len(self._queue)

    def data(self, fd: int) -> None:
        try:
            write_out(fd) if self.in_order else os.fsync(fd)
        except OSError as error:
            raise storage_error(error) from error

    def commit(self, path: Path) -> None:
        request = _Request(path)
        group: list[_Request] = []
        with self._changed:
            self._queue.append(request)
            while self._committing and not request.done:
                self._changed.wait()
            if not request.done:  # nobody is committing: lead the group of everything queued
                group, self._queue, self._committing = self._queue, [], True
        if group:
            try:
                self._commit_group(group)
            except BaseException as error:  # none of the group may believe itself committed
                for queued in group:
                    queued.error = queued.error or OSError(errno.EIO, f"the commit failed: {error!r}")
                raise
            finally:
                with self._changed:
                    for queued in group:
                        queued.done = True
                    self._committing = False
                    self.groups += 1
                    self.requests += len(group)
                    self._changed.notify_all()
        if request.error is not None:
            raise storage_error(request.error) from request.error

    def _commit_group(self, group: list[_Request]) -> None:
        """One ``sync`` per folder, its failure the failure of every request that named the folder."""
        folders: dict[Path, list[_Request]] = {}
        for request in group:
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


def logs_in_order(folder: Path, root: Path = Path("/")) -> bool:
    """Whether ``folder`` is on xfs, or on ext4 with a journal (found by its device number in ``/proc`` and
    ``/sys`` under ``root``, which tests move). An ext4 made without one (``mkfs.ext4 -O ^has_journal``, as some VM
    images are) orders nothing: a folder's fsync there leaves the renamed files' sizes and records unwritten."""
    device = os.stat(folder).st_dev
    kind = _file_system(device, root)
    return kind == "xfs" or (kind == "ext4" and _ext4_has_journal(device, root))


def _file_system(device: int, root: Path) -> str | None:
    """The type of the file system mounted from ``device`` (``/proc/self/mountinfo``)."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        with open(root / "proc/self/mountinfo", encoding="utf-8") as handle:
            for line in handle:
                fields, _, rest = line.partition(" - ")
                if fields.split()[2] == wanted:
                    return rest.split()[0]
    except (OSError, IndexError):
        pass
    return None


def _ext4_has_journal(device: int, root: Path) -> bool:
    """ext4 names its data mode among its options (``data=ordered`` by default) only when it has a journal."""
    try:
        name = os.path.basename(os.readlink(root / f"sys/dev/block/{os.major(device)}:{os.minor(device)}"))
        options = (root / "proc/fs/ext4" / name / "options").read_text(encoding="utf-8").split()
    except OSError:
        return False
    return any(option.startswith("data=") for option in options)


def flusher(durability: Durability, folder: Path) -> GroupCommit | WriteBack:
    """The flusher of a storage in ``folder`` whose ``DURABILITY`` is ``durability``."""
    return GroupCommit(logs_in_order(folder)) if durability == "full" else WriteBack()
