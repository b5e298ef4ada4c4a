"""Asking the kernel to start writing an upload's bytes to disk while the upload goes on.

Otherwise the page cache holds the whole upload dirty until the commit's fdatasync, which then waits for all
of it: about half a second per GiB on this project's test machine, a quarter of a large upload's time.
``sync_file_range(SYNC_FILE_RANGE_WRITE)`` starts the writeback of a range and returns without waiting, so
the disk works beside the network and the final fdatasync waits only for the tail (the same idea as
RocksDB's ``bytes_per_sync``). Python's ``os`` does not wrap it; on Linux ctypes calls libc, elsewhere this is
a no-op. Durability still comes from the fsync at commit: this only moves the work earlier.
"""

from __future__ import annotations

import ctypes
import errno
import os

from .libc import libc_function

SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4
WRITE_AND_WAIT = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER


_SYNC_FILE_RANGE = libc_function("sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint])


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing ``length`` bytes of ``fd`` at ``offset`` to disk, without waiting (ctypes drops the GIL).

    The result is ignored: a filesystem that cannot do it (tmpfs says EINVAL) loses nothing, and a disk error
    surfaces at the fsync that commits the file.
    """
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def write_out(fd: int) -> None:
    """Write every dirty byte of ``fd`` to the disk and wait for it, without committing the file system's journal
    (the group commit's one ``syncfs`` does that for many files at once); ``fdatasync`` where Linux's call is
    missing or refused. A disk error is raised."""
    if _SYNC_FILE_RANGE is not None:
        if _SYNC_FILE_RANGE(fd, 0, 0, WRITE_AND_WAIT) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ESPIPE):
            raise OSError(code, os.strerror(code))
    os.fdatasync(fd)
