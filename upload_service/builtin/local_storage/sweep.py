"""The sweep of what dead writers left in ``.staging`` and ``.trash`` (kill -9, power loss).

A live writer holds an flock on its staging folder's ``data`` file for as long as it writes, so a folder whose
lock can be taken belongs to nobody. Blocking: call it in the storage's threads.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

from .layout import DATA, Layout

STAGING_GRACE_SECONDS = 2.0  # covers the instant between creating a staging folder and locking it


def sweep_leftovers(layout: Layout) -> int:
    """Remove the abandoned folders of ``.staging`` and ``.trash``; return how many."""
    removed = 0
    now = time.time()
    for folder in (layout.staging, layout.trash):
        for entry in os.scandir(folder):
            if now - entry.stat(follow_symlinks=False).st_mtime < STAGING_GRACE_SECONDS:
                continue
            if abandoned(Path(entry.path)):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
    return removed


def abandoned(folder: Path) -> bool:
    """True when no live writer holds the flock on the folder's ``data`` file."""
    try:
        fd = os.open(folder / DATA, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
