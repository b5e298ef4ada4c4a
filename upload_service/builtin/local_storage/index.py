"""``ObjectIndex``: an SQLite file in ``UPLOAD_DIR/.index`` that lists the objects on disk, so a listing, the
sweep of expired uploads and an owner's totals cost the same at a thousand files as at a million.

The objects on disk stay the truth; the index is a cache of their records that anyone may delete (it is
rebuilt, see ``reindex``). Keeping it true takes one rule, followed by every change of an object:

1. ``intend(key)`` notes the key in the storage's own ``PendingJournal`` (``pending``) before the disk changes;
2. the disk changes (a commit's rename, a delete, a move, new metadata);
3. ``settle(key)`` reads the key's record *inside* the index's write transaction and writes what it
   finds (a row, or none); the journal then lets go of the note.

Writes to one index are serialised by SQLite, and each ``settle`` reads the disk while it holds the write lock, so
whatever order changes of one key from several workers take, the last ``settle`` writes the last state. A
process that dies between 2 and 3 leaves its pending note, which ``heal`` settles once its owner's lock is free
(at the next start or sweep). A power loss may lose the newest notes too (WAL writes are not fsynced): storages
register in ``writers`` durably, with the machine's boot id, so a start that finds a writer of an earlier boot
that never closed reconciles the whole index instead.

A file SQLite finds damaged (not a database, malformed pages, a WAL that does not match), at open or at any later
query, is ``discard``-ed: moved aside to ``objects.sqlite3.corrupt``, made anew and empty, and rebuilt in the
background (``on_reset``) while callers read the disk, as for a deleted index.

Blocking: call it in the storage's threads. Connections come from a small pool; writes of one process go through
one leader at a time, which takes every write queued meanwhile into its transaction (a group commit).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from upload_service.storage import StoredObject, check_prefix

from .layout import Layout
from .pending import FOLDER as PENDING_FOLDER, PendingJournal, read_notes

log = logging.getLogger("upload_service.local_storage")

SCHEMA = 2  # an index of another version is deleted and rebuilt: no migrations
FOLDER = ".index"
FILE = "objects.sqlite3"
BUSY_TIMEOUT_MS = 30_000
POOL = 4  # connections kept open for reuse
PENDING_GRACE = 60.0  # a note of the older ``pending`` table this old is settled by the sweep even if its writer lives
DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})  # result codes of a damaged file
ASIDE = ".corrupt"  # an unreadable file is kept once under its name plus this, for a post-mortem
_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY, area TEXT NOT NULL, owner TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL, expires_at REAL, metadata TEXT NOT NULL, record TEXT, generation INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_expiry ON objects (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS objects_record ON objects (record) WHERE record IS NOT NULL;
CREATE TABLE IF NOT EXISTS pending (key TEXT NOT NULL, writer TEXT NOT NULL, at REAL NOT NULL,
                                    PRIMARY KEY (key, writer)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS writers (name TEXT PRIMARY KEY, boot TEXT NOT NULL, at REAL NOT NULL) WITHOUT ROWID;
"""
_COLUMNS = "key, size, sha256, created_at, metadata"
Objects = list[StoredObject]  # (``list`` is a method's name in the class below)


def boot_id() -> str:
    """This boot of the machine (Linux), or "" where unknown: a writer of another boot may have lost notes."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def expiry_of(metadata: dict[str, Any]) -> float | None:
    """The object's expiry as seconds since the epoch: the metadata's ``expires_at`` (ISO 8601), if any."""
    value = metadata.get("expires_at")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class Damaged(sqlite3.DatabaseError):
    """A row the index never wrote (metadata that is not JSON, a time that is not one): SQLite read a damaged
    page without noticing."""


def unreadable(error: BaseException) -> bool:
    """Whether ``error`` says the index file is damaged (as opposed to busy or full): it is then made anew. A
    table or column of the schema missing is damage too (a foreign WAL applied over the file, say): the schema
    is checked at open, and a file of another schema is made anew anyway."""
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    code = getattr(error, "sqlite_errorcode", None) or 0
    return (isinstance(error, Damaged) or code & 0xFF in DAMAGED
            or str(error).startswith(("no such table", "no such column")))


def prefix_range(prefix: str) -> tuple[str, str]:
    """The keys under ``prefix`` are those in [prefix, end): '/' sorts just below '0', so end is the prefix with its
    final '/' turned into '0'."""
    return prefix, prefix[:-1] + "0"


_RANGE = "key > ? AND key < ?"


def key_range(prefix: str, start_after: str | None) -> tuple[str, str]:
    """The bounds of ``_RANGE`` for a page: one lower bound, so that SQLite seeks to it (given both ``>= prefix``
    and ``> start_after`` it seeks to the first and scans every key between). Keys are longer than their
    prefix, so ``> prefix`` loses none."""
    low, high = prefix_range(check_prefix(prefix))
    return max(low, start_after or ""), high


def _row(stored: StoredObject, record: str | None) -> tuple[Any, ...]:
    """An object's row but its generation; ``record``: the ``.records`` file of its record, if it has one."""
    parts = stored.key.split("/")
    return (stored.key, parts[0], parts[1] if len(parts) > 2 else "", stored.size, stored.sha256,
            stored.created_at.isoformat(), expiry_of(stored.metadata), msgspec.json.encode(stored.metadata).decode(),
            record)


def _stored(rows: Iterable[tuple[Any, ...]]) -> Objects:
    """The objects of rows of ``_COLUMNS`` (``Damaged`` if one cannot be what the index wrote)."""
    try:
        return [StoredObject(key=key, size=size, sha256=sha256, created_at=datetime.fromisoformat(created_at),
                             metadata=msgspec.json.decode(metadata))
                for key, size, sha256, created_at, metadata in rows]
    except (ValueError, TypeError, msgspec.DecodeError) as error:
        raise Damaged(f"a row of the index is damaged: {error}") from error


class _Write:
    """One queued write: ``work(connection)`` runs in the leader's transaction."""

    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], Any]) -> None:
        self.work = work
        self.done = False
        self.error: BaseException | None = None
        self.result: Any = None


class ObjectIndex:
    """The index of one ``UPLOAD_DIR``, as one storage (one process's ``LocalStorage``) uses it."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.folder = layout.root / FOLDER
        self.path = self.folder / FILE
        self.writer = layout.owner
        self.boot = boot_id()
        self._pool: list[tuple[sqlite3.Connection, int]] = []
        self._pool_lock = threading.Lock()
        self._epoch = 0  # bumped when the file was replaced: every thread reconnects
        self.inode: int | None = None
        self._write_lock = threading.Lock()
        self._writer: tuple[sqlite3.Connection, int] | None = None
        self._queue_lock = threading.Lock()
        self._queue: list[_Write] = []
        self.fault: Callable[[str], None] | None = None  # tests: called between a change and its settle
        self.journal = PendingJournal(self.folder / PENDING_FOLDER, self.writer)
        self.on_reset: Callable[[], None] | None = None  # called when this storage made the file anew (a rebuild)
        self.unsettled: set[str] = set()  # keys changed whose note or settle failed: ``heal`` settles them

    # -- the file ---------------------------------------------------------------------------------------

    def locked(self) -> contextlib.AbstractContextManager[bool]:
        """The flock held while the file is checked and made (short)."""
        return self._flock("lock", wait=True)

    def rebuilding(self, *, wait: bool) -> contextlib.AbstractContextManager[bool]:
        """The flock one rebuild holds at a time (long: the file's own lock stays free for starting storages)."""
        return self._flock("rebuild.lock", wait=wait)

    @contextlib.contextmanager
    def _flock(self, name: str, *, wait: bool) -> Iterator[bool]:
        """An flock on ``.index/<name>``; yields whether it was taken (always, when ``wait``)."""
        self.folder.mkdir(exist_ok=True)
        fd = os.open(self.folder / name, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def open(self) -> None:
        """Make the file if it is missing, of another schema or unreadable (under the lock), and register this
        writer."""
        for attempt in range(2):
            with self.locked():
                if self._schema_on_disk() != SCHEMA:
                    self._recreate()
                self.inode = os.stat(self.path).st_ino
                self._epoch += 1
            try:
                self._register()
                return
            except sqlite3.DatabaseError as error:  # ``connection`` discarded an unreadable file: once more
                if attempt or not unreadable(error):
                    raise

    def _register(self) -> None:
        with self.connection() as db:
            db.execute("PRAGMA synchronous = FULL")  # this note must survive a power loss (see the module's doc)
            with db:
                db.execute("INSERT OR REPLACE INTO writers VALUES (?, ?, ?)", (self.writer, self.boot, time.time()))
            db.execute("PRAGMA synchronous = NORMAL")

    def discard(self, epoch: int, error: sqlite3.Error) -> None:
        """The file this storage opened at ``epoch`` is unreadable: move it aside and make it anew, unless
        another thread or process did already (the next use of the index then opens the new file)."""
        with self.locked():
            if epoch == self._epoch and not self._replaced():
                self._set_aside(error)
                self._recreate()

    def _set_aside(self, error: sqlite3.Error) -> None:
        """Under the lock: keep the unreadable file (with its own WAL only) under another name, replacing an
        older one, so that it can be looked at but never opened as the index again."""
        aside = f"{self.path}{ASIDE}"
        log.warning("the index %s is unreadable (%s): moved to %s and rebuilt; listings read the disk meanwhile",
                    self.path, error, aside)
        for suffix in ("", "-wal"):
            Path(f"{aside}{suffix}").unlink(missing_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")

    def close(self) -> None:
        """Unregister (a clean stop leaves nothing to reconcile) and close the journal and the connections."""
        self.journal.close()
        with contextlib.suppress(sqlite3.Error, FileNotFoundError):
            self.write(lambda db: db.execute("DELETE FROM writers WHERE name = ?", (self.writer,)))
        with self._pool_lock:
            pool, self._pool = self._pool, []
        with self._write_lock:
            if self._writer is not None:
                pool.append(self._writer)
                self._writer = None
        for db, _ in pool:
            db.close()

    def _schema_on_disk(self) -> int | None:
        if not self.path.exists():
            return None
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)) as db:
                row = db.execute("SELECT value FROM state WHERE name = 'schema'").fetchone()
        except sqlite3.Error as error:
            if unreadable(error):
                self._set_aside(error)
            return None
        return row[0] if row else None

    def _recreate(self) -> None:
        """A fresh, empty, incomplete index (the stale WAL of a deleted file must not be replayed into it)."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        with contextlib.closing(self._connect()) as db, db:
            db.executescript(_SCHEMA_SQL)
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)",
                           [("schema", SCHEMA), ("complete", 0), ("dirty", 0), ("generation", 0)])
        if self.on_reset is not None:
            self.on_reset()

    def _replaced(self) -> bool:
        """Whether the file is no longer the one this storage opened (deleted, or rebuilt by someone)."""
        try:
            return os.stat(self.path).st_ino != self.inode
        except FileNotFoundError:
            return True

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                             check_same_thread=False)  # pooled: used by one thread at a time
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL commits survive a crash of the process; see heal
        except BaseException:
            db.close()
            raise
        return db

    def _writing(self, epoch: int) -> sqlite3.Connection:
        """The one connection writes use (under ``_write_lock``): taking one from the pool for each write made
        and closed connections all the time once more threads wrote at once than the pool keeps."""
        if self._writer is None or self._writer[1] != epoch:
            if self._writer is not None:
                self._writer[0].close()
                self._writer = None
            self._writer = (self._connect(), epoch)
        return self._writer[0]

    def _current(self) -> int:
        """The epoch of the file now at ``path``, opening it first if it was replaced."""
        if self._replaced():
            self.open()
        return self._epoch

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection to the current file (the file is reopened once replaced), from a small pool: one per
        thread would hold three descriptors in each of the storage's threads. A file found unreadable is
        discarded (the error still reaches the caller, who reads the disk instead)."""
        epoch = self._current()
        with self._pool_lock:
            taken = self._pool.pop() if self._pool else None
        try:
            if taken is None or taken[1] != epoch:
                if taken is not None:
                    taken[0].close()
                taken = None
                taken = (self._connect(), epoch)
            yield taken[0]
        except sqlite3.DatabaseError as error:
            if unreadable(error):
                self.discard(epoch, error)
            raise
        finally:
            if taken is not None:
                self._give_back(taken)

    def _give_back(self, taken: tuple[sqlite3.Connection, int]) -> None:
        with self._pool_lock:
            keep = taken[1] == self._epoch and len(self._pool) < POOL
            if keep:
                self._pool.append(taken)
        if not keep:
            taken[0].close()

    # -- state ------------------------------------------------------------------------------------------

    def state(self, db: sqlite3.Connection) -> dict[str, Any]:
        return dict(db.execute("SELECT name, value FROM state").fetchall())

    def usable(self) -> bool:
        """Whether the index lists every object (built at least once since made); else callers read the disk."""
        with self.connection() as db:
            row = db.execute("SELECT value FROM state WHERE name = 'complete'").fetchone()
        return bool(row and row[0])

    # -- writes -----------------------------------------------------------------------------------------

    def write(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` in a write transaction, batched with the writes other threads queued meanwhile."""
        item = _Write(work)
        with self._queue_lock:
            self._queue.append(item)
        with self._write_lock:
            if not item.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._run(batch)
        if item.error is not None:
            raise item.error
        return item.result

    def _run(self, batch: list[_Write]) -> None:
        """One transaction for the whole batch; should one write in it fail, each runs again alone, so only its
        own caller gets the error (each ``execute`` hands the GIL to the other threads and back, so a savepoint
        around every write cost more than the write)."""
        try:
            try:
                self._transaction(batch)
            except Exception:
                if len(batch) == 1:
                    raise
                for item in batch:
                    try:
                        self._transaction([item])
                    except Exception as error:
                        item.error = error
        except Exception as error:
            for item in batch:
                item.error = error
        finally:
            for item in batch:
                item.done = True

    def _transaction(self, batch: list[_Write]) -> None:
        """The batch in one transaction; in a new file if the current one turns out unreadable."""
        try:
            self._attempt(batch)
        except sqlite3.DatabaseError as error:
            if not unreadable(error):
                raise
            self._attempt(batch)  # ``_attempt`` discarded the file

    def _attempt(self, batch: list[_Write]) -> None:
        epoch = self._current()
        try:
            db = self._writing(epoch)
            db.execute("BEGIN IMMEDIATE")
            while self._replaced():  # deleted or set aside while this waited for the lock: write to the new file
                db.execute("ROLLBACK")
                epoch = self._current()
                db = self._writing(epoch)
                db.execute("BEGIN IMMEDIATE")
            try:
                for item in batch:
                    item.result = item.work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # a damaged file may refuse even this
                        db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as error:
            if unreadable(error):
                self.discard(epoch, error)
            raise

    def intend(self, *keys: str) -> int:
        """Note that ``keys`` are about to change on disk (step 1 of the module's rule); returns the note's
        journal, for ``journal.done`` once settled."""
        return self.journal.note(keys)

    def settle(self, *keys: str) -> None:
        """Write what the disk now holds under ``keys`` (step 3)."""
        if self.fault is not None:
            self.fault("settle")
        self.write(partial(self.record, keys=keys))

    def record(self, db: sqlite3.Connection, keys: tuple[str, ...] | list[str]) -> int:
        """Inside a write transaction: make the rows of ``keys`` say what their records say now; returns how many
        of them have no record (gone, or a file without its xattr)."""
        generation = db.execute("SELECT value FROM state WHERE name = 'generation'").fetchone()[0]
        rows, gone = [], []
        for key in dict.fromkeys(keys):
            try:
                stored, name = self.layout.read_entry(self.layout.object_file(key), key)
            except (ValueError, KeyError, OSError):
                log.warning("%s has an unreadable record: left out of the index", key)
                stored = name = None
            if stored is None:
                gone.append((key,))
            else:
                rows.append((*_row(stored, name), generation))
        db.executemany("DELETE FROM objects WHERE key = ?", gone)
        db.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(gone)

    @contextlib.contextmanager
    def changing(self, *keys: str) -> Iterator[None]:
        """Around one change of ``keys`` on disk: ``intend`` before, ``settle`` after, even if the change failed
        (a refused commit leaves the key as it was, and settling says so). The change never fails because of the
        index: a failed note or settle is logged and its keys kept in ``unsettled`` (a failed settle's note stays
        in the journal too, should the process die first), and this storage's next sweep settles them."""
        try:
            journal: int | None = self.intend(*keys)
        except Exception:
            log.exception("could not note a change of %s; the next sweep will settle it", ", ".join(keys))
            journal = None
            self.unsettled.update(keys)
        try:
            yield
        finally:
            try:
                self.settle(*keys)
            except Exception:
                log.exception("could not update the index for %s; the next sweep will", ", ".join(keys))
                self.unsettled.update(keys)
            else:
                if journal is not None:
                    self.journal.done(journal)

    # -- reads ------------------------------------------------------------------------------------------

    def list(self, prefix: str, start_after: str | None, limit: int | None) -> list[StoredObject]:
        """Keyset pagination: one range scan of the primary key, whatever the number of objects before it."""
        query = f"SELECT {_COLUMNS} FROM objects WHERE {_RANGE} ORDER BY key"
        args: list[Any] = [*key_range(prefix, start_after)]
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        with self.connection() as db:
            return _stored(db.execute(query, args))

    def list_expired(self, prefix: str, before: float, start_after: str | None,
                     limit: int | None) -> Objects:
        """Objects under ``prefix`` whose expiry is at or before ``before``, in key order (the expiry's index)."""
        # the expiry's index, always: without statistics SQLite may prefer scanning the key range of every
        # temporary upload, and the expired ones are few (the sweep takes them away)
        query = (f"SELECT {_COLUMNS} FROM objects INDEXED BY objects_expiry WHERE expires_at <= ? AND {_RANGE} "
                 "ORDER BY key")
        args: list[Any] = [before, *key_range(prefix, start_after)]
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        with self.connection() as db:
            return _stored(db.execute(query, args))

    def totals(self, prefix: str) -> tuple[int, int]:
        """How many objects are under ``prefix`` and their bytes."""
        low, high = prefix_range(check_prefix(prefix))
        with self.connection() as db:
            count, size = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM objects WHERE key >= ? AND key < ?",
                                     (low, high)).fetchone()
        return count, size

    def named_records(self) -> set[str]:
        """The ``.records`` files that hold objects' records: those of keys being changed (noted in a journal;
        read from the disk, as their rows may not say yet), then those the index names (one read of its index on
        them: a change settled between the two looks wrote its row before its note went, and a move's row names
        the record before and after it, so nothing slips between)."""
        with self.connection() as db:
            changing = {key for (key,) in db.execute("SELECT key FROM pending")}  # of versions before journals
        changing |= {note.key for note in read_notes(self.journal.folder)}
        found: set[str] = set()
        for key in changing:
            with contextlib.suppress(ValueError, KeyError, OSError):
                if (name := self.layout.read_entry(self.layout.object_file(key), key)[1]) is not None:
                    found.add(name)
        with self.connection() as db:
            found.update(name for (name,) in db.execute(
                "SELECT record FROM objects INDEXED BY objects_record WHERE record IS NOT NULL"))
        return found

    def trusted(self) -> bool:
        """Whether the index lists every object and no writer of an earlier boot may have lost notes."""
        with self.connection() as db:
            state = self.state(db)
        return bool(state.get("complete")) and not state.get("dirty")

    def count(self) -> int:
        with self.connection() as db:
            return int(db.execute("SELECT count(*) FROM objects").fetchone()[0])
