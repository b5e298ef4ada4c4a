"""The system calls that make a change on disk durable and atomic, and their failures in the core's terms.

Blocking: call them in the storage's threads.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import msgspec

from upload_service import random_hex
from upload_service.storage import StorageError, StorageFull

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


def rename_into(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, making target's folder only when the rename finds none (an owner's
    first file): trying mkdir before every rename cost two system calls per upload."""
    try:
        os.rename(source, target)
    except FileNotFoundError:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)


def write_json(path: Path, data: dict[str, Any], *, fresh: bool = False) -> None:
    """Write ``data`` durably to ``path``, replacing it atomically. ``fresh``: the file is new, in a folder no
    reader sees yet (staging), so it is written in place, one open and no rename."""
    target = path if fresh else path.with_name(f".{path.name}.{random_hex(6)}.tmp")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(msgspec.json.encode(data))
        while view:
            view = view[os.write(fd, view):]
        os.fdatasync(fd)
    finally:
        os.close(fd)
    if not fresh:
        os.replace(target, path)
