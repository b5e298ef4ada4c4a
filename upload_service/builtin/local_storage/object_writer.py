"""``LocalObjectWriter``: a new object streamed into ``.staging``, then renamed into place by ``commit``."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from upload_service import complete
from upload_service.storage import StoredObject, WriterBase, check_key

from .buffered import BufferedFileWriter
from .durable import storage_error
from .layout import DATA, write_meta

if TYPE_CHECKING:
    from .storage import LocalStorage


class LocalObjectWriter(WriterBase):
    """Streams into ``.staging/<owner>-<random>/data`` with sha256 computed on the way (see ``BufferedFileWriter``).

    The staging file is created by the first batch's thread trip, not up front: a small upload (one buffer)
    then costs a single trip, at commit, instead of two. A larger one is synced and closed by ``finish``, in
    the disk lane right after its last write: a file waiting for the rest of its batch holds no descriptor
    (the storage's owner lock keeps its folder from the sweep), and ``commit`` works on paths only.
    """

    def __init__(self, storage: LocalStorage) -> None:
        self._storage = storage
        self._dir = storage.layout.new_staging()
        self._fd: int | None = None
        self._hash = hashlib.sha256()
        self._out = BufferedFileWriter(-1, [self._hash], storage.threads.pool, self._write_sync, hash_beside=True)
        self._finished = False
        self._sealed = False  # the whole file is written, synced and closed
        self.size = 0
        self.committed = False

    def _open(self) -> None:
        if self._fd is not None:
            return
        try:
            self._dir.mkdir(parents=True)
            self._fd = os.open(self._dir / DATA, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        except OSError as error:
            raise storage_error(error) from error
        self._out.fd = self._fd

    def _write_sync(self, chunks: list[bytes]) -> None:
        """Runs in a worker thread for each batch (a test plugin slows it down to mimic a busy disk)."""
        self._open()
        self._out.write_sync(chunks)

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        await self._out.write(chunk)

    async def finish(self) -> None:
        """Make size and sha256 final. A file still wholly in the buffer (a small upload) is hashed here and
        written by commit's single trip, rather than costing a trip of its own now; a larger one is written out,
        synced and closed."""
        if self._finished:
            return
        if self._out.untouched:  # then under WRITE_BUFFER, or it would have been flushed
            self._out.hash_rest()
        else:
            await self._out.finish(then=self._seal_sync)
        self._finished = True

    def _seal_sync(self) -> None:
        """fdatasync and close the written file (in the disk lane after the last write, or in commit's trip)."""
        try:
            os.fdatasync(self._fd)  # type: ignore[arg-type]
        except OSError as error:
            raise storage_error(error) from error
        finally:
            self._close()
        self._sealed = True

    async def commit(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        check_key(key)
        rest = await self._out.take_rest()
        # Waited out even if the request is cancelled meanwhile: the thread closes the file descriptor, and an
        # abort running beside it would close that number a second time (by then maybe another connection's).
        stored = await complete(self._storage.threads.run(self._commit_sync, key, rest, datetime.now(UTC), metadata))
        self.committed = True
        return stored

    def _commit_sync(self, key: str, rest: list[bytes], created: datetime, metadata: dict[str, Any]) -> StoredObject:
        """Last buffer, fdatasync and close (unless ``finish`` did), metadata, rename into place: one trip to a
        worker thread for a small file."""
        try:
            if not self._sealed:
                self._open()
                if rest:
                    self._out.store_sync(rest)  # hashes it too, unless ``finish`` did
                self._seal_sync()
            stored = StoredObject(key=key, size=self.size, sha256=self.sha256, created_at=created, metadata=metadata)
            write_meta(self._dir, stored, fresh=True)
            self._storage.layout.place(self._dir, key)
        finally:
            self._close()
        return stored

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def abort(self) -> None:
        """Drop everything written; safe to call twice, and shielded so a cancelled request still cleans up."""

        async def discard() -> None:
            await self._out.settle()
            await self._storage.threads.run(self._discard_sync)

        await asyncio.shield(discard())

    def _discard_sync(self) -> None:
        self._close()
        shutil.rmtree(self._dir, ignore_errors=True)
