"""``LocalStorage``: the ``Storage`` protocol on one folder (the layout is in ``layout``)."""

from __future__ import annotations

import errno
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from upload_service.storage import ObjectExists, ObjectNotFound, StoredObject

from .durable import rename_into, storage_error
from .group_commit import Durability
from .layout import Layout
from .object_writer import LocalObjectWriter
from .owner import OwnerLock
from .reading import read_range
from .resumable import LocalResumableUploads
from .sweep import sweep_leftovers
from .threads import IOThreads


class LocalStorage:
    """Objects as files under ``root/objects``, safe with several workers on one folder.

    Blocking work runs in the storage's own threads, which ``open`` starts and ``close`` ends; between them the
    storage holds its owner lock, which keeps its staging files from any worker's sweep. ``durability``
    (``DURABILITY``): ``full`` flushes every change to disk before it returns, ``relaxed`` leaves that to the
    kernel (see ``group_commit``).
    """

    name = "local"

    def __init__(self, root: Path, durability: Durability = "full") -> None:
        self.layout = Layout(root, durability)
        self.threads = IOThreads()
        self.resumable = LocalResumableUploads(self.layout, self.threads)
        self.owner = OwnerLock(self.layout)

    async def open(self) -> None:
        self.threads.open()
        await self.threads.run(self.owner.acquire)

    async def close(self) -> None:
        if self.threads.is_open:
            await self.threads.run(self.owner.release)
        await self.threads.close()

    def writer(self) -> LocalObjectWriter:
        return LocalObjectWriter(self)

    def _load(self, key: str) -> StoredObject | None:
        return self.layout.read_record(self.layout.object_path(key), key)

    async def stat(self, key: str) -> StoredObject | None:
        return await self.threads.run(self._load, key)

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return read_range(self.layout.object_path(key), key, start, end)

    async def delete(self, key: str) -> bool:
        return await self.threads.run(self.layout.remove, self.layout.object_path(key))

    def _list_sync(self, prefix: str, start_after: str | None, limit: int | None) -> list[StoredObject]:
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

    def _move_sync(self, src: str, dst: str) -> None:
        target = self.layout.object_path(dst)
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
        return await self.threads.run(sweep_leftovers, self.layout)

    def _check_sync(self) -> None:
        probe = self.layout.staging / f"ready-{secrets.token_hex(8)}"
        try:
            probe.write_bytes(b"ok")
        finally:
            probe.unlink(missing_ok=True)

    async def check_ready(self) -> None:
        await self.threads.run(self._check_sync)
