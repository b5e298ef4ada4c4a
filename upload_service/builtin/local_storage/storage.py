"""``LocalStorage``: the ``Storage`` protocol on one folder (the layout is in ``layout``, the index in ``index``)."""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from upload_service.storage import ObjectExists, ObjectNotFound, RecordFlush, StoredObject

from .durable import rename_into, storage_error
from .group_commit import Durability, WriteBack
from .index import ObjectIndex, expiry_of
from .layout import Flusher, Layout
from .object_writer import LocalObjectWriter
from .owner import OwnerLock
from .reading import read_range
from .reindex import heal, rebuild
from .resumable import LocalResumableUploads
from .sweep import sweep_leftovers, sweep_records
from .threads import IOThreads

log = logging.getLogger("upload_service.local_storage")
Objects = list[StoredObject]  # (``list`` is a method's name in the class below)
T = TypeVar("T")


class IndexedLayout(Layout):
    """The layout whose commits (``place`` and ``link``, for new objects and finished tus uploads alike) keep the
    index."""

    index: ObjectIndex

    def place(self, folder: Path, key: str, flush: Flusher | None = None) -> None:
        with self.index.changing(key):
            super().place(folder, key, flush)

    def link(self, fd: int, key: str, flush: Flusher | None = None) -> None:
        with self.index.changing(key):
            super().link(fd, key, flush)


class LocalStorage:
    """Objects as files under ``root/objects``, safe with several workers on one folder.

    Blocking work runs in the storage's own threads, which ``open`` starts and ``close`` ends; between them the
    storage holds its owner lock, which keeps its staging files from any worker's sweep. ``durability``
    (``DURABILITY``): ``full`` flushes every change to disk before it returns, ``relaxed`` leaves that to the
    kernel (see ``group_commit``). Listings, expired objects and totals come from the index (``index``) once it
    is complete, and from the disk until then, or whenever the index fails: a request never fails because of it.
    """

    name = "local"

    def __init__(self, root: Path, durability: Durability = "full") -> None:
        self.layout = IndexedLayout(root, durability)
        self.index = self.layout.index = ObjectIndex(self.layout)
        self.threads = IOThreads()
        self.resumable = LocalResumableUploads(self.layout, self.threads)
        self.owner = OwnerLock(self.layout)
        self._stop = threading.Event()
        self._rebuild: Future[int | None] | None = None
        self._rebuild_lock = threading.Lock()
        self.index.on_reset = self._schedule_rebuild

    async def open(self) -> None:
        self.threads.open()
        self._stop.clear()
        await self.threads.run(self._open_sync)

    def _open_sync(self) -> None:
        self.owner.acquire()
        self.index.open()
        self._heal_quietly()

    def _heal_quietly(self, *, records: bool = False) -> None:
        """Heal the index and rebuild it if needed, then (``records``) sweep the ``.records`` files no object
        names, logging what fails (it is tried again at the next sweep)."""
        try:
            heal(self.index)
            self._rebuild_if_needed()
            if records and (swept := sweep_records(self.layout, self.index)):
                log.info("removed %d record files that no object names", swept)
        except (sqlite3.Error, OSError):
            log.exception("could not heal the index; the next sweep will try again")

    def _rebuild_if_needed(self) -> None:
        """Rebuild when the index is new, incomplete or dirty."""
        if self._needs_rebuild():
            self._schedule_rebuild()

    def _needs_rebuild(self) -> bool:
        with self.index.connection() as db:
            state = self.index.state(db)
        return not state.get("complete") or bool(state.get("dirty"))

    def _schedule_rebuild(self) -> None:
        """Rebuild in the background (``list`` reads the disk meanwhile), unless a rebuild of this storage is
        running already (it starts again by itself if the file is made anew). Also the index's ``on_reset``."""
        with self._rebuild_lock:
            if self._stop.is_set() or not self.threads.is_open:
                return
            if self._rebuild is None or self._rebuild.done():
                self._rebuild = self.threads.pool.submit(self._rebuild_quietly)

    def _rebuild_quietly(self) -> int | None:
        """Rebuild; while another process holds the rebuild lock, look again every second until the index is
        complete (that process may be finishing a file that was made anew since) or this storage closes."""
        try:
            while True:
                count = rebuild(self.index, self._stop, wait=False)
                if count is not None or self._stop.wait(1.0) or not self._needs_rebuild():
                    return count
        except Exception:
            log.exception("rebuilding the index failed; listings read the disk until a rebuild succeeds")
            return None

    async def close(self) -> None:
        self._stop.set()
        if self.threads.is_open:
            await self.threads.run(self._close_sync)
        await self.threads.close()

    def _close_sync(self) -> None:
        if self._rebuild is not None:
            self._rebuild.result()
        self.index.close()
        self.owner.release()

    async def reindex(self) -> int:
        """Rebuild the index from the disk now (waiting for a rebuild another process runs); how many objects.
        A rebuild still running in the background (``open`` starts one for a new index) is waited for instead of
        run twice: it corrects every row, as a new one would, and changes made through the storage meanwhile
        write their rows themselves. Files put into the folder by hand after it started are not in it."""
        running = self._rebuild if self._rebuild is not None and not self._rebuild.done() else None
        count = await asyncio.wrap_future(running) if running is not None else None
        while count is None:
            count = await self.threads.run(rebuild, self.index)
        return count

    def writer(self) -> LocalObjectWriter:
        return LocalObjectWriter(self)

    def record_writer(self, flush: RecordFlush) -> LocalObjectWriter:
        """A small record (``upload_service.storage.record_writer``) written without a flush of its own: ``lazy``
        always, ``ordered`` where the file system journals in order (xfs, a journaled ext4), as the next change's
        commit then makes it durable too; elsewhere it is flushed like any object. Saves a journal commit per
        record."""
        unflushed = flush == "lazy" or self.layout.flush.in_order
        return LocalObjectWriter(self, WriteBack() if unflushed else None)

    def _load(self, key: str) -> StoredObject | None:
        return self.layout.read_record(self.layout.object_path(key), key)

    async def stat(self, key: str) -> StoredObject | None:
        return await self.threads.run(self._load, key)

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return read_range(self.layout.object_path(key), key, start, end)

    def _delete_sync(self, key: str) -> bool:
        with self.index.changing(key):
            return self.layout.remove(self.layout.object_path(key))

    async def delete(self, key: str) -> bool:
        return await self.threads.run(self._delete_sync, key)

    def _indexed(self, read: Callable[..., T], *args: Any) -> T | None:
        """``read(*args)`` from the index once it is complete; None when it is not, or cannot be read (the caller
        reads the disk: an unreadable file is made anew and rebuilt meanwhile, see ``ObjectIndex.discard``)."""
        try:
            if self.index.usable():
                return read(*args)
        except (sqlite3.Error, OSError) as error:
            log.warning("could not read the index (%s): reading the disk", error)
        return None

    def _list_sync(self, prefix: str, start_after: str | None, limit: int | None) -> list[StoredObject]:
        found = self._indexed(self.index.list, prefix, start_after, limit)
        return found if found is not None else self._walk_sync(prefix, start_after, limit)

    def _walk_sync(self, prefix: str, start_after: str | None, limit: int | None) -> list[StoredObject]:
        """The listing from the disk itself (every key of the prefix, sorted): while the index is being built."""
        keys = sorted(self.layout.keys_under(self.layout.prefix_dir(prefix), prefix[:-1]))
        if start_after is not None:
            keys = [key for key in keys if key > start_after]
        found: list[StoredObject] = []
        for key in keys:
            if limit is not None and len(found) >= limit:
                break
            stored = self._load(key)
            if stored is not None:
                found.append(stored)
        return found

    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int | None = None) -> list[StoredObject]:
        return await self.threads.run(self._list_sync, prefix, start_after, limit)

    async def list_expired(self, prefix: str, before: datetime, *, start_after: str | None = None,
                           limit: int | None = None) -> Objects:
        return await self.threads.run(self._expired_sync, prefix, before.timestamp(), start_after, limit)

    def _expired_sync(self, prefix: str, before: float, start_after: str | None,
                      limit: int | None) -> Objects:
        expired = self._indexed(self.index.list_expired, prefix, before, start_after, limit)
        if expired is not None:
            return expired
        found = []
        for stored in self._walk_sync(prefix, start_after, None):
            expiry = expiry_of(stored.metadata)
            if expiry is not None and expiry <= before:
                found.append(stored)
                if limit is not None and len(found) >= limit:
                    break
        return found

    async def totals(self, prefix: str) -> tuple[int, int]:
        return await self.threads.run(self._totals_sync, prefix)

    def _totals_sync(self, prefix: str) -> tuple[int, int]:
        totals = self._indexed(self.index.totals, prefix)
        if totals is not None:
            return totals
        found = self._walk_sync(prefix, None, None)
        return len(found), sum(stored.size for stored in found)

    def _move_sync(self, src: str, dst: str) -> None:
        target = self.layout.object_path(dst)
        with self.index.changing(src, dst):
            try:
                rename_into(self.layout.object_path(src), target)
            except (FileNotFoundError, NotADirectoryError) as error:
                raise ObjectNotFound(src) from error
            except OSError as error:
                if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise ObjectExists(dst) from error
                raise storage_error(error) from error
            self.layout.flush.commit(target.parent)

    async def move(self, src: str, dst: str, metadata: dict[str, Any] | None = None) -> StoredObject:
        await self.threads.run(self._move_sync, src, dst)
        if metadata is not None:
            return await self.update_metadata(dst, metadata)
        stored = await self.stat(dst)
        if stored is None:
            raise ObjectNotFound(dst)
        return stored

    def _update_sync(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        stored = self._load(key)
        if stored is None:
            raise ObjectNotFound(key)
        updated = replace(stored, metadata=metadata)
        with self.index.changing(key):
            try:
                self.layout.write_record(self.layout.object_path(key), updated)
            except FileNotFoundError as error:
                raise ObjectNotFound(key) from error
            except OSError as error:
                raise storage_error(error) from error
        return updated

    async def update_metadata(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        return await self.threads.run(self._update_sync, key, metadata)

    async def sweep_staging(self) -> int:
        return await self.threads.run(self._sweep_sync)

    def _sweep_sync(self) -> int:
        """What dead writers left: staging folders, index notes of changes they did not settle, record files."""
        removed = sweep_leftovers(self.layout)
        self._heal_quietly(records=True)
        return removed

    def _check_sync(self) -> None:
        probe = self.layout.staging / f"ready-{secrets.token_hex(8)}"
        try:
            probe.write_bytes(b"ok")
        finally:
            probe.unlink(missing_ok=True)

    async def check_ready(self) -> None:
        await self.threads.run(self._check_sync)
