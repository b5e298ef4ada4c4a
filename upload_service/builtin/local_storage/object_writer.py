"""``LocalObjectWriter``: a new object streamed into ``.staging``, then renamed into place by ``commit``."""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from upload_service import complete
from upload_service.storage import StoredObject, WriterBase, check_key

from .buffered import BufferedFileWriter
from .durable import storage_error

if TYPE_CHECKING:
    from .layout import Flusher
    from .storage import LocalStorage


class LocalObjectWriter(WriterBase):
    """Streams into a staging file (``Layout.new_staging``) with sha256 computed on the way (see
    ``BufferedFileWriter``).

    The staging file is created by the first batch's thread trip, not up front: a small upload (one buffer)
    then costs a single trip, at commit, which writes it, gives it its record, flushes it (``DURABILITY``) and
    renames it into place. A larger one is flushed (``full``) and closed by ``finish``, in the disk lane right
    after its last write: a file waiting for the rest of its batch holds no descriptor (the storage's owner
    lock keeps it from the sweep), and ``commit`` reopens it for its record.
    """

    def __init__(self, storage: LocalStorage, flush: Flusher | None = None) -> None:
        self._storage = storage
        self._flush = flush  # another flusher than the storage's (``LocalStorage.record_writer``)
        self._staging = storage.layout.new_staging()
        self._fd: int | None = None
        self._hash = hashlib.sha256()
        self._out = BufferedFileWriter(-1, [self._hash], storage.threads.pool, self._write_sync, hash_beside=True)
        self._finished = False
        self._closed = False  # the whole file is written (and, under ``full``, synced) and closed
        self.size = 0
        self.committed = False

    def _open(self) -> None:
        if self._fd is not None:
            return
        layout = self._storage.layout
        try:
            layout.make_staging(self._staging)
            self._fd = os.open(layout.staged_data(self._staging), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
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
        flushed and closed."""
        if self._finished:
            return
        if self._out.untouched:  # then under WRITE_BUFFER, or it would have been flushed
            self._out.hash_rest()
        else:
            await self._out.finish(then=self._close_written)
        self._finished = True

    def _close_written(self) -> None:
        """Flush (``DURABILITY``) and close the written file, in the disk lane after the last write: the bulk of a
        large file's flush, done before commit. Under ``full`` an fdatasync, whose journal commit is nothing beside
        the file's own bytes (writing them out without it, as small files are, measured slower for 512 MiB)."""
        try:
            if self._storage.layout.flush.durable:
                os.fdatasync(self._fd)  # type: ignore[arg-type]
            else:
                self._storage.layout.flush.data(self._fd)  # type: ignore[arg-type]
        except OSError as error:
            raise storage_error(error) from error
        finally:
            self._close()
        self._closed = True

    async def commit(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        check_key(key)
        rest = await self._out.take_rest()
        # Waited out even if the request is cancelled meanwhile: the thread closes the file descriptor, and an
        # abort running beside it would close that number a second time (by then maybe another connection's).
        stored = await complete(self._storage.threads.run(self._commit_sync, key, rest, datetime.now(UTC), metadata))
        self.committed = True
        return stored

    def _commit_sync(self, key: str, rest: list[bytes], created: datetime, metadata: dict[str, Any]) -> StoredObject:
        """Last buffer, record, flush, then the key: one trip to a worker thread for a small file. A file nothing
        of which was written yet (all of it in ``rest``) goes into an unnamed file in its own folder and is linked
        as ``key`` (``open_unnamed``: no staging file to create and rename out); a staged one is renamed into place."""
        layout = self._storage.layout
        unnamed = False
        try:
            if self._closed:
                self._fd = os.open(layout.staged_data(self._staging), os.O_RDONLY)
            else:
                if self._fd is None and (fd := layout.open_unnamed(key)) is not None:
                    self._fd = self._out.fd = fd
                    unnamed = True
                self._open()  # the staging file, unless the file is open already
                if rest:
                    self._out.store_sync(rest)  # hashes it too, unless ``finish`` did
            stored = StoredObject(key=key, size=self.size, sha256=self.sha256, created_at=created, metadata=metadata)
            layout.seal(self._staging, self._fd, stored, self._flush)  # type: ignore[arg-type]
            if unnamed:
                layout.link(self._fd, key, self._flush)  # type: ignore[arg-type]
        except OSError as error:
            raise storage_error(error) from error
        finally:
            self._close()
        if not unnamed:
            layout.place(self._staging, key, self._flush)
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
        self._storage.layout.drop_staging(self._staging)
