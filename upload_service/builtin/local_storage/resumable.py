"""Uploads in progress on local disk: the ``ResumableStorage`` of ``LocalStorage`` (tus).

Layout: ``UPLOAD_DIR/.resumable/<id>/data`` (the bytes so far) and ``record.json`` (offset, the protocol's
info, and the key of the object it became: noted as ``committing`` before the object is placed, so an upload
whose process died right after placing it reads as committed to that object, not as one to finish again).
The offset in the record is written after the bytes, and on read it is capped at the size of ``data``, so a
crash never makes the offset claim bytes that are not there. A chunk that must be all or nothing (checksum)
is truncated away when it fails.

sha256 of the whole file: hashlib cannot save its state, so each worker keeps the running hash of the uploads
it is appending to (``ResumableBase``). When the chunks of one upload arrive in order at one worker, finishing
costs nothing; otherwise (chunks spread over workers, a restart, a cut connection whose partial bytes were not
hashed here) finishing re-reads the file once: disk time, no memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial
from pathlib import Path
from typing import Any

from upload_service import random_hex
from upload_service.storage import (
    Appending,
    ObjectExists,
    ObjectNotFound,
    ResumableBase,
    ResumableUpload,
    StagedUpload,
    StoredObject,
)

from .buffered import BufferedFileWriter
from .durable import storage_error, write_json
from .layout import DATA, Layout
from .reading import read_range
from .threads import IOThreads

RECORD = "record.json"
HASH_READ = 4 * 1024 * 1024


def _truncate(fd: int, size: int) -> None:
    """Cut the file to ``size`` only when it is longer: on ext4 a truncated file makes its ``close`` flush the
    file's delayed allocations, which cost every PATCH a wait on the disk (~2.5 ms per 8 MiB here)."""
    if os.fstat(fd).st_size != size:
        os.ftruncate(fd, size)


class LocalResumableUploads(ResumableBase[ResumableUpload]):
    """``ResumableStorage`` on local disk (see the module docstring)."""

    def __init__(self, layout: Layout, threads: IOThreads) -> None:
        super().__init__()
        self.layout = layout
        self.threads = threads

    def data(self, upload_id: str) -> Path:
        return self.layout.upload_dir(upload_id) / DATA

    # -- records (blocking: in the storage's threads) ----------------------------------------------------

    def load_sync(self, upload_id: str) -> ResumableUpload | None:
        folder = self.layout.upload_dir(upload_id)
        try:
            with open(folder / RECORD, encoding="utf-8") as handle:
                record = json.load(handle)
        except (FileNotFoundError, NotADirectoryError):
            return None
        offset, committed = record["offset"], record.get("committed")
        if committed is None and self._became(folder, record.get("committing")):
            committed = record["committing"]  # its process died between placing the object and noting it
        if committed is None:
            try:
                offset = min(offset, os.stat(folder / DATA).st_size)
            except FileNotFoundError:
                offset = 0
        return ResumableUpload(upload_id, offset, record["info"], committed)

    def _became(self, folder: Path, key: str | None) -> bool:
        """Whether the object ``key`` (noted before placing it) exists and holds this upload's bytes."""
        if key is None:
            return False
        try:
            return os.path.samefile(folder / DATA, self.layout.data_of(self.layout.object_path(key)))
        except (FileNotFoundError, NotADirectoryError):
            return False

    def require_sync(self, upload_id: str) -> ResumableUpload:
        upload = self.load_sync(upload_id)
        if upload is None:
            raise ObjectNotFound(upload_id)
        return upload

    def save(self, upload: ResumableUpload, *, durable: bool = False, committing: str | None = None) -> None:
        record = {"offset": upload.offset, "info": upload.info, "committed": upload.committed,
                  "committing": committing}
        path = self.layout.upload_dir(upload.id) / RECORD
        if durable:
            write_json(path, record, self.layout.flush.data)
            self.layout.flush.commit(path.parent)
            return
        tmp = path.with_name(f".record.{random_hex(6)}.tmp")
        tmp.write_text(json.dumps(record, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)

    def _create_sync(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        folder = self.layout.upload_dir(upload_id)
        try:
            folder.mkdir()
        except FileExistsError as error:
            raise ObjectExists(upload_id) from error
        except OSError as error:
            raise storage_error(error) from error
        (folder / DATA).touch()
        upload = ResumableUpload(upload_id, 0, info)
        self.save(upload, durable=True)
        return upload

    def _set_info_sync(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        upload = self.require_sync(upload_id)
        updated = ResumableUpload(upload_id, upload.offset, info, upload.committed)
        self.save(updated, durable=True)
        return updated

    def _open_at(self, upload_id: str, offset: int) -> tuple[ResumableUpload, int]:
        upload = self.require_sync(upload_id)
        self.expect_offset(upload, offset)
        fd = os.open(self.data(upload_id), os.O_WRONLY)
        _truncate(fd, offset)  # bytes past the offset belong to a chunk that never counted
        os.lseek(fd, offset, os.SEEK_SET)
        return upload, fd

    def _list_sync(self) -> list[ResumableUpload]:
        found = []
        for entry in sorted(os.listdir(self.layout.resumable)):
            upload = self.load_sync(entry) if not entry.startswith(".") else None
            if upload is not None:
                found.append(upload)
        return found

    # -- the protocol ---------------------------------------------------------------------------------

    async def load(self, upload_id: str) -> ResumableUpload | None:
        return await self.threads.run(self.load_sync, upload_id)

    def as_upload(self, record: ResumableUpload) -> ResumableUpload:
        return record

    async def create(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        return await self.threads.run(self._create_sync, upload_id, info)

    async def set_info(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        return await self.threads.run(self._set_info_sync, upload_id, info)

    async def open_append(self, upload_id: str, offset: int) -> LocalAppend:
        upload, fd = await self.threads.run(self._open_at, upload_id, offset)
        return LocalAppend(self, upload, fd)

    async def read(self, upload_id: str) -> AsyncIterator[bytes]:
        upload = await self.uncommitted(upload_id)
        async with aclosing(read_range(self.data(upload_id), upload_id, 0, upload.offset)) as chunks:
            async for chunk in chunks:
                yield chunk

    def staged(self, record: ResumableUpload, hasher: Any | None) -> LocalResumableObject:
        return LocalResumableObject(self, record, hasher)

    async def remove(self, upload_id: str) -> bool:
        return await self.threads.run(self.layout.remove, self.layout.upload_dir(upload_id))

    async def list(self) -> list[ResumableUpload]:
        return await self.threads.run(self._list_sync)


class LocalAppend(Appending):
    """One append: the chunks go through a ``BufferedFileWriter`` to the upload's ``data`` at its offset.

    Hashed beside the write: after a failure that keeps the intact prefix the running hash is dropped
    (finishing then reads the upload back once), so an interrupted PATCH costs a read, a whole one nothing.
    """

    def __init__(self, uploads: LocalResumableUploads, upload: ResumableUpload, fd: int) -> None:
        self._uploads = uploads
        self._upload = upload
        self._fd = fd
        self._out = BufferedFileWriter(fd, [], uploads.threads.pool, hash_beside=True)

    @property
    def hasher(self) -> Any | None:
        return self._out.hashers[0] if self._out.hashers else None

    @hasher.setter
    def hasher(self, hasher: Any | None) -> None:
        self._out.hashers = [hasher] if hasher is not None else []

    async def write(self, chunk: bytes) -> None:
        await self._out.write(chunk)

    async def flush(self) -> None:
        await self._out.finish()

    async def keep(self, *, cut: bool) -> ResumableUpload:
        if cut:
            await self._out.settle(keep=True)
            self.hasher = None
        return await self._uploads.threads.run(self._end, self._upload.offset + self._out.written)

    async def discard(self) -> None:
        await self._out.settle(keep=False)
        await self._uploads.threads.run(self._end, self._upload.offset)

    def _end(self, offset: int) -> ResumableUpload:
        """Cut off what does not count, close the file, and record the offset."""
        try:
            _truncate(self._fd, offset)
        finally:
            os.close(self._fd)
        updated = ResumableUpload(self._upload.id, offset, self._upload.info, None)
        self._uploads.save(updated)
        return updated


class LocalResumableObject(StagedUpload):
    """A complete upload as a staged object: ``place`` hard-links its bytes into a committed object."""

    def __init__(self, uploads: LocalResumableUploads, upload: ResumableUpload, hasher: Any | None) -> None:
        super().__init__(upload, hasher)
        self._uploads = uploads

    async def rehash(self) -> Any:
        return await self._uploads.threads.run(self._rehash_sync)

    def _rehash_sync(self) -> Any:
        hasher = hashlib.sha256()
        with open(self._uploads.data(self.upload.id), "rb") as handle:
            remaining = self.size
            while remaining > 0:
                block = handle.read(min(HASH_READ, remaining))
                if not block:
                    break
                hasher.update(block)
                remaining -= len(block)
        return hasher

    async def note_committing(self, key: str) -> None:
        upload = ResumableUpload(self.upload.id, self.size, self.upload.info)
        await self._uploads.threads.run(partial(self._uploads.save, upload, durable=True, committing=key))

    async def place(self, stored: StoredObject) -> None:
        await self._uploads.threads.run(self._place_sync, stored)

    def _place_sync(self, stored: StoredObject) -> None:
        """Link the upload's bytes into staging, give them the object's record and flush them, rename into place."""
        layout = self._uploads.layout
        staging = layout.new_staging()
        data = self._uploads.data(self.upload.id)
        try:
            layout.make_staging(staging)
            fd = os.open(data, os.O_RDONLY)
            try:
                os.link(data, layout.staged_data(staging))
                layout.seal(staging, fd, stored)
            finally:
                os.close(fd)
            layout.place(staging, stored.key)
        except BaseException:
            layout.drop_staging(staging)
            raise

    async def note_committed(self, key: str) -> None:
        await self._uploads.threads.run(self._committed_sync, key)

    def _committed_sync(self, key: str) -> None:
        self._uploads.save(ResumableUpload(self.upload.id, self.size, self.upload.info, key), durable=True)
        data = self._uploads.data(self.upload.id)
        os.unlink(data)
        self._uploads.layout.flush.commit(data.parent)
