"""The system calls that make a change on disk durable and atomic, and their failures in the core's terms.

Blocking: call them in the storage's threads.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from upload_service import random_hex
from upload_service.storage import StorageError, StorageFull

from .libc import libc_function

FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def storage_error(error: OSError) -> StorageError:
    """A failed system call as the core's error: ``StorageFull`` (507) when the disk or quota is full."""
    if error.errno in FULL:
        return StorageFull("no space left in UPLOAD_DIR")
    return StorageError(str(error))


def fsync_dir(path: Path) -> None:
    """Make the entries of a folder (a rename into it, a new or removed file) survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


AT_FDCWD = -100
RENAME_NOREPLACE = 1


_RENAMEAT2 = libc_function("renameat2", [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint])
AT_SYMLINK_FOLLOW = 0x400


_LINKAT = libc_function("linkat", [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int])


def rename_noreplace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, refusing (``FileExistsError``) when ``target`` exists: never replaces.

    ``rename(2)`` replaces a file silently and only a folder's contents refuse it, so an object that is one file
    needs ``renameat2(RENAME_NOREPLACE)`` (Linux 3.15, ext4, xfs, btrfs, tmpfs; ctypes, as Python has no
    wrapper). Where the file system lacks it, a file is linked to its new name (``link`` refuses a taken one)
    and its old name removed: the same outcome for a commit from private staging; two racing moves of one
    object could then both succeed for an instant, which only such file systems risk.
    """
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(target), RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), str(source), None, str(target))
    if os.path.isdir(source):
        os.rename(source, target)  # a folder: refused when the target is a folder with contents, or a file
    else:
        os.link(source, target)
        os.unlink(source)


def rename_into(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` without replacing anything there, making target's folder only when the
    rename finds none (an owner's first file): trying mkdir before every rename cost two system calls per upload."""
    try:
        rename_noreplace(source, target)
    except FileNotFoundError:
        target.parent.mkdir(parents=True, exist_ok=True)
        rename_noreplace(source, target)


def open_unnamed(folder: Path) -> int | None:
    """A new file with no name yet in ``folder`` (``O_TMPFILE``), made if missing; None where the file system or
    kernel has no unnamed files. Written, given its record and then named by ``link_unnamed``, a small object
    never enters ``.staging`` and is never renamed out of it: a rename across folders takes the file system's
    rename lock and both folders' locks, where a link takes one folder's; and a process killed before the link
    leaves nothing behind for the sweep."""
    for attempt in range(2):
        try:
            return os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o640)
        except FileNotFoundError:
            if attempt:
                raise
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.EISDIR):  # EISDIR: a kernel without it
                return None
            raise
    return None


def link_unnamed(fd: int, target: Path) -> None:
    """Give the unnamed file ``fd`` the name ``target``; ``FileExistsError`` if the name is taken (nothing is
    replaced). ``linkat`` of ``/proc/self/fd/<fd>`` following the link (ctypes, as ``os.link`` follows it only
    given a folder descriptor); ``linkat(AT_EMPTY_PATH)`` would need a capability the service lacks."""
    if _LINKAT is None:
        raise OSError(errno.ENOSYS, "linkat is not available")
    if _LINKAT(AT_FDCWD, f"/proc/self/fd/{fd}".encode(), AT_FDCWD, os.fsencode(target), AT_SYMLINK_FOLLOW) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(target))


def unnamed_files_work(folder: Path) -> bool:
    """Whether ``open_unnamed`` and ``link_unnamed`` work in ``folder`` (tried once, at start)."""
    probe = folder / f".unnamed-{random_hex(6)}"
    try:
        fd = open_unnamed(folder)
        if fd is None:
            return False
        try:
            link_unnamed(fd, probe)
        finally:
            os.close(fd)
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


def write_json(path: Path, data: dict[str, Any], flush: Callable[[int], None], *, fresh: bool = False) -> None:
    """Write ``data`` to ``path``, replacing it atomically, and ``flush`` the file before it is renamed into sight
    (``DURABILITY``'s flush: a sync, or only a start of the writeback). ``fresh``: the file is new, in a folder no
    reader sees yet (staging), so it is written in place, one open and no rename."""
    target = path if fresh else path.with_name(f".{path.name}.{random_hex(6)}.tmp")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(msgspec.json.encode(data))
        while view:
            view = view[os.write(fd, view):]
        flush(fd)
    finally:
        os.close(fd)
    if not fresh:
        os.replace(target, path)
