"""Bringing the index back to the disk's truth: ``rebuild`` (every object, under the rebuild lock) and ``heal``
(only the keys that writers which died were changing).

``rebuild`` works in place while the service serves: it starts a new generation, walks ``objects/``, and
records each key it finds, in batches, re-reading its record inside the write transaction (``record``), so
a change that a live writer settles meanwhile is never overwritten with an older state; every row the walk and
the live writers did not touch in this generation is of an object that is gone, and goes. Blocking: call both
in the storage's threads.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from .index import PENDING_GRACE, ObjectIndex
from .layout import META
from .owner import held
from .pending import Note, journal_writer, journals, read_notes

log = logging.getLogger("upload_service.local_storage")

BATCH = 500  # keys per write transaction: short enough that live writers wait a few milliseconds at most


def walk(objects: Path, key: str = "") -> Iterator[str]:
    """Every object's key under ``objects`` (a file, or a folder with a ``meta.json`` of the older layout), folder
    by folder in name order, so that a batch of keys falls on a few neighbouring pages of the index (in the order
    ``scandir`` gives, each key of a batch landed on a page of its own, and every batch rewrote hundreds of pages).
    One folder's names are in memory at a time (a million file names of one owner: about 85 MB, briefly)."""
    files: list[str] = []
    folders: list[str] = []
    try:
        with os.scandir(objects) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    files.append(entry.name)
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    prefix = f"{key}/" if key else ""
    files.sort()
    yield from (prefix + name for name in files)
    del files
    for name in sorted(folders):
        if os.path.exists(os.path.join(objects, name, META)):
            yield prefix + name
        else:
            yield from walk(objects / name, prefix + name)


def rebuild(index: ObjectIndex, stop: threading.Event | None = None, *, wait: bool = True) -> int | None:
    """Make the index list exactly the objects on disk; return how many, or None when another process is
    rebuilding (and ``wait`` is False) or ``stop`` was set midway (the index stays as usable as it was). A file
    made anew meanwhile (deleted, or found unreadable) is rebuilt from the start."""
    with index.rebuilding(wait=wait) as taken:
        if not taken:
            return None
        while (count := _rebuild(index, stop)) == _REPLACED:
            log.info("the index was made anew during its rebuild: starting again")
        return count


_REPLACED = -1  # what ``_rebuild`` returns when the file it rebuilt was made anew meanwhile


def _rebuild(index: ObjectIndex, stop: threading.Event | None) -> int | None:
    """One rebuild, under the rebuild lock; ``_REPLACED`` if the file was made anew meanwhile."""
    started = time.monotonic()
    generation = index.write(_next_generation)
    batch: list[str] = []
    missing = 0
    for key in walk(index.layout.objects):
        batch.append(key)
        if len(batch) >= BATCH:
            if stop is not None and stop.is_set():
                return None
            keys, batch = batch, []
            missing += index.write(partial(index.record, keys=keys))
    if batch:
        missing += index.write(partial(index.record, keys=batch))
    count: int = index.write(partial(_finish, generation=generation))
    if count == _REPLACED:
        return count
    log.info("rebuilt the index of %s: %d objects in %.1f s", index.layout.root, count, time.monotonic() - started)
    if missing:  # most likely a copy or restore that dropped the xattrs, where each object's record lives
        log.warning("%d files under %s have no record and are not served: was UPLOAD_DIR copied or restored "
                    "without its extended attributes? Copy it with rsync -X, tar --xattrs or cp -a",
                    missing, index.layout.objects)
    return count


def _next_generation(db: sqlite3.Connection) -> int:
    generation = int(db.execute("SELECT value FROM state WHERE name = 'generation'").fetchone()[0]) + 1
    db.execute("UPDATE state SET value = ? WHERE name = 'generation'", (generation,))
    return generation


def _finish(db: sqlite3.Connection, generation: int) -> int:
    """Drop the rows of objects gone and mark the index complete; ``_REPLACED`` if this file is not the one the
    generation started in (a file made anew starts at generation 0, and only the rebuild lock's holder bumps it)."""
    if int(db.execute("SELECT value FROM state WHERE name = 'generation'").fetchone()[0]) != generation:
        return _REPLACED
    db.execute("DELETE FROM objects WHERE generation < ?", (generation,))
    db.executemany("UPDATE state SET value = ? WHERE name = ?", [(1, "complete"), (0, "dirty")])
    return int(db.execute("SELECT count(*) FROM objects").fetchone()[0])


def heal(index: ObjectIndex) -> int:
    """Settle the pending notes of writers that died (their owner lock is free) and this storage's
    ``unsettled`` keys (whose note or settle failed); mark the index dirty (for a rebuild) when a writer of
    another boot never closed. Return how many keys were settled.

    Notes are read from the writers' journals (``pending``), and from the ``pending`` table that versions before
    the journals kept (settled after ``PENDING_GRACE`` even if their writer lives). A live writer's journal is
    left alone: every note in it has settled, or is in that writer's own ``unsettled``, which its sweeps settle
    (re-settling its old notes at every sweep would read a million records for a busy worker's journal)."""
    with index.connection() as db:
        writers = dict(db.execute("SELECT name, boot FROM writers").fetchall())
        rows = db.execute("SELECT key, writer, at FROM pending").fetchall()
    files = journals(index.journal.folder)
    notes = [Note(key, writer, at, None) for key, writer, at in rows] + list(read_notes(index.journal.folder))
    names = (set(writers) | {note.writer for note in notes} | set(map(journal_writer, files))) - {index.writer}
    dead = {name for name in names if not held(index.layout.owners / name)}
    lost = any(not writers[name] or writers[name] != index.boot for name in dead if name in writers)
    now = time.time()
    stale = [note for note in notes
             if note.writer in dead or (note.journal is None and now - note.at > PENDING_GRACE)]
    unsettled = list(index.unsettled)

    def work(db: sqlite3.Connection) -> None:
        index.record(db, sorted({note.key for note in stale} | set(unsettled)))
        db.executemany("DELETE FROM pending WHERE key = ? AND writer = ?",
                       [(note.key, note.writer) for note in stale if note.journal is None])
        db.executemany("DELETE FROM writers WHERE name = ?", [(name,) for name in dead])
        if lost:
            db.execute("UPDATE state SET value = 1 WHERE name = 'dirty'")

    if stale or dead or unsettled:
        index.write(work)
        index.unsettled.difference_update(unsettled)
    for journal in files:
        if journal_writer(journal) in dead:  # settled above; its writer will never add to it
            journal.unlink(missing_ok=True)
    if lost:
        log.warning("a storage of an earlier boot of this machine did not close: the index will be rebuilt")
    return len(stale) + len(unsettled)
