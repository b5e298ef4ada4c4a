"""Streaming writes: bytes go to a new blob (one PutObject when small, a multipart upload when not).

Memory per write is bounded by the part being filled plus ``MAX_PARTS_IN_FLIGHT`` parts being sent: the
writer awaits a free slot before it takes more bytes, so a fast client is slowed to S3's pace. sha256 (and
each request's Content-MD5) is computed part by part in a worker thread, in order. Nothing is visible until
``commit`` writes the record.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from upload_service.storage import StoredObject, WriterBase, check_key

from .client import s3_errors
from .journal import Entry
from .layout import new_blob_id
from .records import Record

if TYPE_CHECKING:
    from .storage import S3Storage

log = logging.getLogger("upload_service.s3")
MiB = 1024 * 1024
FIRST_PART_SIZE = 8 * MiB
PARTS_PER_SIZE_STEP = 1000
MAX_PARTS_IN_FLIGHT = 2


def part_size(number: int) -> int:
    """Size of part ``number`` (1-based): 8 MiB, doubling every 1,000 parts.

    S3 allows 10,000 parts of 5 MiB to 5 GiB; doubling every 1,000 parts reaches 4 GiB parts at the end and
    fits 8 TiB in 10,000 parts, so the largest S3 object (5 TiB) fits whatever the stream's length.
    """
    return FIRST_PART_SIZE * 2 ** ((number - 1) // PARTS_PER_SIZE_STEP)


class S3ObjectWriter(WriterBase):
    """``async with storage.writer() as w``: ``write`` chunks, then ``commit(key, metadata)`` or leave to abort."""

    def __init__(self, storage: S3Storage) -> None:
        self._storage = storage
        self.blob_id = new_blob_id()
        self._blob = storage.layout.blob(self.blob_id)
        self._hash = hashlib.sha256()
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._entry: Entry | None = None
        self._upload_id: str | None = None
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_PARTS_IN_FLIGHT)
        self._failure: BaseException | None = None
        self._blob_exists = False
        self._finished = False
        self._closed = False
        self.size = 0
        self.committed = False

    @s3_errors
    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._check_failure()
        self._chunks.append(bytes(chunk))
        self._buffered += len(chunk)
        self.size += len(chunk)
        while self._buffered >= part_size(self._next_part):
            await self._send_part(self._take(part_size(self._next_part)))

    def _take(self, size: int | None = None) -> bytes:
        """The first ``size`` buffered bytes (all when None) as one bytes object: a single copy."""
        data = b"".join(self._chunks)
        size = len(data) if size is None else size
        rest = data[size:]
        self._chunks, self._buffered = ([rest] if rest else []), len(rest)
        return data[:size] if rest else data

    def _check_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _journal(self) -> None:
        """The blob's journal entry comes first: no byte reaches S3 that a sweep could not find."""
        if self._entry is None:
            self._entry = await self._storage.journal.create(self.blob_id, {"op": "write"})
            self._entry.keep_alive()

    async def _send_part(self, part: bytes) -> None:
        client = await self._storage.clients.get()
        if self._upload_id is None:
            await self._journal()
            created = await client.create_multipart_upload(Bucket=self._storage.bucket, Key=self._blob)
            self._upload_id = created["UploadId"]
        md5 = await asyncio.to_thread(self._digest, part)
        await self._slots.acquire()
        number, self._next_part = self._next_part, self._next_part + 1
        task = asyncio.create_task(self._upload_part(client, number, part, md5))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _digest(self, data: bytes) -> str:
        """Runs in a worker thread: the object's running sha256, and the Content-MD5 S3 checks for this request."""
        self._hash.update(data)
        return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()

    async def _upload_part(self, client: Any, number: int, part: bytes, md5: str) -> None:
        try:
            response = await client.upload_part(Bucket=self._storage.bucket, Key=self._blob, UploadId=self._upload_id,
                                                PartNumber=number, Body=part, ContentMD5=md5)
            self._etags[number] = response["ETag"]
        except BaseException as error:
            self._failure = self._failure or error
            raise
        finally:
            self._slots.release()

    @s3_errors
    async def finish(self) -> None:
        """Send what is buffered and wait for every part: after it, ``size`` and ``sha256`` are final."""
        if self._finished:
            return
        if self._upload_id is None:
            data = self._take()
            md5 = await asyncio.to_thread(self._digest, data)
            await self._journal()
            client = await self._storage.clients.get()
            await client.put_object(Bucket=self._storage.bucket, Key=self._blob, Body=data, ContentMD5=md5)
            self._blob_exists = True
        elif self._buffered:
            await self._send_part(self._take())
        await asyncio.gather(*self._sending, return_exceptions=True)
        self._check_failure()
        self._finished = True

    @s3_errors
    async def commit(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        """Complete the blob, then write the record that makes it visible (the write order of the README)."""
        check_key(key)
        await self.finish()
        await self._entry.update(key=key)  # type: ignore[union-attr]
        if self._upload_id is not None:
            client = await self._storage.clients.get()
            parts = [{"PartNumber": number, "ETag": etag} for number, etag in sorted(self._etags.items())]
            await client.complete_multipart_upload(Bucket=self._storage.bucket, Key=self._blob,
                                                   UploadId=self._upload_id, MultipartUpload={"Parts": parts})
            self._upload_id, self._blob_exists = None, True
        record = Record(key, self.blob_id, self.size, self.sha256, datetime.now(UTC), metadata)
        await self._storage.records.put(record, create=True)
        self.committed = True
        await self._release()
        return record.stored()

    async def _release(self) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            try:
                await entry.release()
            except Exception:  # the sweep finds the entry, sees the record, and only drops the entry
                log.warning("could not release journal entry %s", self.blob_id, exc_info=True)

    async def abort(self) -> None:
        """Drop everything written; safe to call twice, shielded so that a cancelled request still cleans up."""
        if self._closed:
            return
        self._closed = True
        await asyncio.shield(self._discard())

    async def _discard(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        try:
            client = await self._storage.clients.get()
            if self._upload_id is not None:
                await client.abort_multipart_upload(Bucket=self._storage.bucket, Key=self._blob,
                                                    UploadId=self._upload_id)
            if self._blob_exists:
                await client.delete_object(Bucket=self._storage.bucket, Key=self._blob)
        except Exception:  # the journal entry stays behind; the sweep finishes the abort
            log.warning("could not abort upload of blob %s; the next sweep will", self.blob_id, exc_info=True)
            if self._entry is not None:
                self._entry.stop_refreshing()
            return
        await self._release()
