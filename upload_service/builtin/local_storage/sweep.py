"""The sweep of what dead writers left in ``.staging`` and ``.trash`` (kill -9, power loss): files and folders;
and of ``.records`` files that no object names (``sweep_records``).

A staging folder belongs to the storage named at the start of its name, which holds an flock on its lock in
``.owners`` for as long as it is open (see ``owner``): a folder whose owner's lock can be taken belongs to
nobody, and neither does that lock file. A folder without a known owner (one of an older version's writers,
a trash folder) is in use while something holds an flock on its ``data`` file. Blocking: call it in the
storage's threads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from .index import ObjectIndex
from .layout import DATA, Layout
from .owner import held

STAGING_GRACE_SECONDS = 2.0  # covers the instant between creating a lock file (or an older writer's folder) and
# locking it
RECORD_GRACE_SECONDS = 3600.0  # a commit writes a record file, names it on the staged file and renames that into
# place in one call of one thread, so a record file this old is named by an object or by none


def sweep_leftovers(layout: Layout) -> int:
    """Remove the abandoned folders of ``.staging`` and ``.trash``, and the lock files of owners that are gone;
    return how many folders."""
    now = time.time()
    owners = list(os.scandir(layout.owners))
    gone = {entry.name for entry in owners if _older(entry, now, STAGING_GRACE_SECONDS) and not held(entry.path)}
    live = {entry.name for entry in owners} - gone
    removed = 0
    for folder in (layout.staging, layout.trash):
        for entry in os.scandir(folder):
            if (_older(entry, now, STAGING_GRACE_SECONDS) and entry.name.partition("-")[0] not in live
                    and abandoned(Path(entry.path))):
                _remove(entry)
                removed += 1
    for name in gone:
        (layout.owners / name).unlink(missing_ok=True)
    return removed


def _remove(entry: os.DirEntry[str]) -> None:
    """A staged file (one object), or a folder (a write of the older layout, a deleted object's)."""
    if entry.is_dir(follow_symlinks=False):
        shutil.rmtree(entry.path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)


def sweep_records(layout: Layout, index: ObjectIndex) -> int:
    """Remove the ``.records`` files that no object names, older than ``RECORD_GRACE_SECONDS``: what a crash
    between the two steps of a delete or an update leaves, or a commit refused after its record was written, or
    two updates of one object racing. Only with an index that can say which are named (complete, not dirty);
    a record named by a staged file (a commit under way) stays. Files are listed first, then what names them
    (staged files, then the index), and only the unnamed ones are looked at for their age: a sweep costs a
    listing of ``.records`` and one read of the index's names, however many large records there are. Returns
    how many went."""
    names = {entry.name for entry in os.scandir(layout.records)}
    if not names or not index.trusted():
        return 0
    staged = layout.record_names(layout.staging)  # before the index: a staged file is noted, then renamed
    unnamed = names - staged - index.named_records()
    now = time.time()
    orphans = [name for name in unnamed if _older(layout.records / name, now, RECORD_GRACE_SECONDS)]
    for name in orphans:
        (layout.records / name).unlink(missing_ok=True)
    return len(orphans)


def _older(path: str | os.PathLike[str], now: float, grace: float) -> bool:
    """Whether ``path`` was last changed at least ``grace`` seconds before ``now``; False if it is gone meanwhile
    (a commit's rename, a storage closing)."""
    try:
        return now - os.stat(path, follow_symlinks=False).st_mtime >= grace
    except FileNotFoundError:
        return False


def abandoned(folder: Path) -> bool:
    """True when no live writer holds the flock on the folder's ``data`` file."""
    return not held(folder / DATA)
