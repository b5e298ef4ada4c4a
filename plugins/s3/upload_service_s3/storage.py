"""``S3Storage``: the ``upload_service.storage.Storage`` protocol on any S3-compatible store.

Write order (see ``layout.py`` for the names): journal entry -> blob -> record -> journal entry removed.
Every public method raises only the core's storage errors (``s3_errors``): botocore's and aiohttp's stay inside.
The record is the only thing readers look at, and it is written with one PUT after the blob is complete,
so an object is visible whole or not at all. A blob without a record is never served; whatever a crash
leaves half done is named by its journal entry, which the sweep finds once it goes stale and either
finishes (a move whose new record was written) or undoes (a write whose record was not).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from upload_service import download_presentation
from upload_service.storage import ObjectNotFound, StorageError, StoredObject, check_key, check_prefix

from .client import ClientHolder, is_missing, s3_errors, write_probe
from .journal import Entry, Journal
from .layout import Layout
from .records import Record, Records
from .resumable import S3ResumableUploads
from .settings import S3Settings
from .writer import S3ObjectWriter

READ_CHUNK = 256 * 1024
RECORD_READS_IN_FLIGHT = 16
T = TypeVar("T")


class DeletedByRecovery(ObjectNotFound):
    """The object went while a dead process's delete of it was finished: for a delete of it, that delete is done."""


class S3Storage:
    """Objects in one bucket under ``S3_PREFIX``; safe with any number of workers and machines on the bucket."""

    name = "s3"

    def __init__(self, settings: S3Settings) -> None:
        if not settings.bucket:
            raise ValueError("S3_BUCKET is not set")
        self.settings = settings
        self.bucket = settings.bucket
        self.layout = Layout(settings.prefix)
        self.clients = ClientHolder(settings)
        self.records = Records(self.clients, self.layout, self.bucket)
        self.journal = Journal(self.clients, self.layout, self.bucket, settings.staging_timeout)
        self.resumable = S3ResumableUploads(self)

    @s3_errors
    async def open(self) -> None:
        """Called by the service before it serves: make the client of this event loop."""
        await self.clients.open()

    @s3_errors
    async def close(self) -> None:
        await self.clients.close()

    def writer(self) -> S3ObjectWriter:
        return S3ObjectWriter(self)

    @s3_errors
    async def stat(self, key: str) -> StoredObject | None:
        record = await self.records.get(check_key(key))
        return record.stored() if record else None

    @s3_errors
    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        record = await self.records.get(check_key(key))
        if record is None:
            raise ObjectNotFound(key)
        end = record.size if end is None else min(end, record.size)
        if start >= end:
            return
        client = await self.clients.get()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=self.layout.blob(record.blob_id),
                                               Range=f"bytes={start}-{end - 1}")
        except ClientError as error:
            if is_missing(error):  # deleted between the record and the blob
                raise ObjectNotFound(key) from error
            raise
        async with response["Body"] as body:
            async for chunk in body.iter_chunks(READ_CHUNK):
                yield chunk

    @s3_errors
    async def delete(self, key: str) -> bool:
        record = await self.records.get(check_key(key))
        if record is None:
            return False

        async def delete_locked(current: Record) -> bool:
            await self.records.delete(key)
            await self._delete_blob(current.blob_id)
            return True

        try:
            return await self._locked(record, {"op": "delete", "key": key}, delete_locked)
        except DeletedByRecovery:  # a dead process's delete of this very object, finished on its behalf
            return True
        except ObjectNotFound:
            return False

    @s3_errors
    async def move(self, src: str, dst: str, metadata: dict[str, Any] | None = None) -> StoredObject:
        """New record first (a conditional write: of two racing moves to ``dst`` one wins), then the old one goes."""
        check_key(dst)
        record = await self.records.get(check_key(src))
        if record is None:
            raise ObjectNotFound(src)

        async def move_locked(current: Record) -> StoredObject:
            moved = replace(current, key=dst, metadata=current.metadata if metadata is None else metadata)
            await self.records.put(moved, create=True)
            await self.records.delete(src)
            return moved.stored()

        return await self._locked(record, {"op": "move", "key": src, "dst": dst}, move_locked)

    @s3_errors
    async def update_metadata(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        record = await self.records.get(check_key(key))
        if record is None:
            raise ObjectNotFound(key)

        async def update_locked(current: Record) -> StoredObject:
            updated = replace(current, metadata=metadata)
            await self.records.put(updated, create=False)
            return updated.stored()

        return await self._locked(record, {"op": "update", "key": key}, update_locked)

    async def _locked(self, record: Record, note: dict[str, Any], change: Callable[[Record], Awaitable[T]]) -> T:
        """Run ``change`` holding the blob's journal entry, on the record as it is once the entry is held.

        An entry taken over from a dead process comes with that process's work, which is finished or undone
        first. The whole is shielded from cancellation (a client hanging up does not stop it half way). When it
        fails unexpectedly the entry is left to go stale, and the next taker (or the sweep) recovers.
        """
        entry = await self.journal.lock(record.blob_id, note)
        entry.keep_alive()

        async def run() -> T:
            try:
                removed = await self._recover(entry)
                current = await self.records.get(record.key)
                if current is None or current.blob_id != record.blob_id:
                    raise (DeletedByRecovery if record.key in removed else ObjectNotFound)(record.key)
                result = await change(current)
            except StorageError:  # refused before anything changed (gone, destination taken)
                await entry.release()
                raise
            except BaseException:
                entry.stop_refreshing()
                raise
            await entry.release()
            return result

        return await asyncio.shield(run())

    async def _delete_blob(self, blob_id: str) -> None:
        client = await self.clients.get()
        await client.delete_object(Bucket=self.bucket, Key=self.layout.blob(blob_id))

    @s3_errors
    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int | None = None) -> list[StoredObject]:
        """ListObjectsV2 over the records (``StartAfter``), then each record read, 16 at a time."""
        check_prefix(prefix)
        client = await self.clients.get()
        found: builtins.list[StoredObject] = []
        after = self.layout.record(start_after) if start_after else None
        while limit is None or len(found) < limit:
            want = 1000 if limit is None else min(1000, limit - len(found))
            page = await client.list_objects_v2(Bucket=self.bucket, Prefix=self.layout.record(prefix), MaxKeys=want,
                                                **({"StartAfter": after} if after else {}))
            names = [item["Key"] for item in page.get("Contents", [])]
            records = await self._read_records([self.layout.key_of(name) for name in names])
            found.extend(record.stored() for record in records if record is not None)
            if not names or not page.get("IsTruncated"):
                break
            after = names[-1]
        return found if limit is None else found[:limit]

    async def _read_records(self, keys: builtins.list[str]) -> builtins.list[Record | None]:
        slots = asyncio.Semaphore(RECORD_READS_IN_FLIGHT)

        async def read(key: str) -> Record | None:
            async with slots:
                return await self.records.get(key)

        return list(await asyncio.gather(*(read(key) for key in keys)))

    @s3_errors
    async def sweep_staging(self) -> int:
        """Abort multipart uploads that neither a journal entry nor a tus upload names, and finish or undo the
        operations of dead processes. (Abandoned tus uploads are the tus sweep's: it deletes expired ones.)"""
        uploads = await self._multipart_uploads(self.layout.blobs)  # listed before the journal: see README
        journaled = await self.journal.names() | await self.resumable.blob_ids()
        client = await self.clients.get()
        removed = 0
        for upload in uploads:
            if self.layout.blob_id_of(upload["Key"]) not in journaled:
                await self._abort_upload(client, upload)
                removed += 1
        for held in await self.journal.stale():
            entry = await self.journal.take_over(held, {"op": "sweep"})
            if entry is None:  # taken over by an operation on the blob meanwhile, or not dead after all
                continue
            await self._recover(entry)
            await entry.release()
            removed += 1
        return removed

    async def _multipart_uploads(self, prefix: str) -> builtins.list[dict[str, Any]]:
        client = await self.clients.get()
        paginator = client.get_paginator("list_multipart_uploads")
        return [upload async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for upload in page.get("Uploads", [])]

    async def _abort_upload(self, client: Any, upload: dict[str, Any]) -> None:
        try:
            await client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        except ClientError as error:
            if not is_missing(error):
                raise

    async def _recover(self, entry: Entry) -> set[str]:
        """Finish or undo the work of the dead holders ``entry`` was taken over from, oldest first; the keys whose
        deletes that finished. Each step is safe to repeat, so a taker that dies half way leaves it to the next."""
        removed: set[str] = set()
        for note in entry.recovering:
            removed |= await self._finish_or_undo(note, entry.blob_id)
        if entry.recovering:
            await entry.update(recovering=[])
        return removed

    async def _finish_or_undo(self, note: dict[str, Any], blob_id: str) -> set[str]:
        """The one operation a dead process noted: a write without its record is undone, a delete is finished (the
        key it removed is returned), a move that placed its new record is finished (else there is nothing to
        undo), an update needs nothing."""
        op = note.get("op")
        if op == "write" and not await self._refers(note.get("key"), blob_id):
            client = await self.clients.get()
            for upload in await self._multipart_uploads(self.layout.blob(blob_id)):
                await self._abort_upload(client, upload)
            await self._delete_blob(blob_id)
        elif op == "delete":
            removed: set[str] = set()
            if await self._refers(note.get("key"), blob_id):
                await self.records.delete(note["key"])
                removed.add(note["key"])
            await self._delete_blob(blob_id)
            return removed
        elif op == "move" and await self._refers(note.get("dst"), blob_id) \
                and await self._refers(note.get("key"), blob_id):  # the move placed dst, its source is left
            await self.records.delete(note["key"])
        return set()

    async def _refers(self, key: str | None, blob_id: str) -> bool:
        record = await self.records.get(key) if key else None
        return record is not None and record.blob_id == blob_id

    @s3_errors
    async def check_ready(self) -> None:
        await write_probe(await self.clients.get(), self.bucket, self.layout.probe())

    @s3_errors
    async def download_url(self, key: str, filename: str, content_type: str) -> str | None:
        """With ``S3_PRESIGNED_DOWNLOADS=true``: a short-lived presigned URL of the blob, for a redirect. S3 sends
        neither ``nosniff`` nor a CSP, so the URL sets the type and disposition the service's own download would
        have (``download_presentation``): HTML, SVG or XML never comes back from S3 as what it is."""
        if not self.settings.presigned_downloads:
            return None
        record = await self.records.get(check_key(key))
        if record is None:
            return None
        served, disposition = await download_presentation(filename, content_type,
                                                          lambda size: self._head(key, size))
        client = await self.clients.get()
        return await client.generate_presigned_url("get_object", ExpiresIn=int(self.settings.presigned_ttl), Params={
            "Bucket": self.bucket, "Key": self.layout.blob(record.blob_id),
            "ResponseContentDisposition": disposition, "ResponseContentType": served,
        })

    async def _head(self, key: str, size: int) -> bytes:
        return b"".join([chunk async for chunk in self.read(key, 0, size)])
