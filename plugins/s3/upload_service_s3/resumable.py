"""Uploads in progress on S3 (tus): the ``ResumableStorage`` of ``S3Storage``.

S3 objects cannot be appended to, and every multipart part but the last must be at least 5 MiB, while tus
chunks come in any size. So an upload is a multipart upload of full parts (sizes as in ``writer.part_size``)
plus a *tail*: the bytes after the last full part, kept as a small object. An append reads the tail back,
cuts full parts from tail + new bytes, and writes the rest as a new tail. Under ``S3_PREFIX``::

    resumable/<id>/record        JSON: info, blob id, multipart upload id, the parts (number, ETag, size),
                                 the current tail, and once finished ``sealed`` / ``committing`` / ``committed``
    resumable/<id>/tail-<rand>   the current tail (and leftovers of appends that died, deleted with the upload)
    blobs/<blob id>              the multipart upload; complete once sealed, then an object's bytes

The record is written after the bytes it counts, so ``offset`` (the parts plus the tail it names) never
counts a byte that is not stored. A part uploaded by an append that then failed is not in the record; the
next append uploads that part number again, and completing lists only the recorded parts.

Finishing *seals* the upload: the tail becomes the last part (``UploadPartCopy``, no bytes through the
service) and the multipart upload is completed into ``blobs/<blob id>``. Committing writes the object's
record pointing at that blob, like any write; the upload's record notes the key first (``committing``), so
a delete after a crash can tell a blob that already belongs to a file from one it must remove, and reading
the upload after such a crash finds it committed to that file rather than finishing it into a second one.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from upload_service.storage import (
    Appending,
    ObjectExists,
    ResumableBase,
    ResumableUpload,
    StagedUpload,
    StoredObject,
    check_key,
)

from .client import is_missing, is_precondition_failed, read_small, s3_errors
from .layout import new_blob_id
from .records import Record
from .writer import part_size

if TYPE_CHECKING:
    from .storage import S3Storage


@dataclass
class Progress:
    """The record of one upload in progress (see the module docstring)."""

    id: str
    info: dict[str, Any]
    blob_id: str
    multipart: str | None = None
    parts: list[tuple[int, str, int]] = field(default_factory=list)
    tail: str | None = None
    tail_size: int = 0
    sealed: bool = False
    committing: str | None = None
    committed: str | None = None

    @property
    def offset(self) -> int:
        return sum(size for _, _, size in self.parts) + self.tail_size

    def public(self) -> ResumableUpload:
        return ResumableUpload(self.id, self.offset, self.info, self.committed)

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Progress:
        data = json.loads(raw)
        data["parts"] = [tuple(part) for part in data.get("parts", [])]
        return cls(**data)


class S3ResumableUploads(ResumableBase[Progress]):
    """``ResumableStorage`` on S3; callers serialise work on one upload id (the tus locker)."""

    def __init__(self, storage: S3Storage) -> None:
        super().__init__()
        self.storage = storage

    def path(self, upload_id: str, leaf: str = "record") -> str:
        """The S3 name of an upload's record (or of another ``leaf`` of its folder)."""
        return f"{self.storage.layout.prefix}resumable/{check_key(upload_id)}/{leaf}"

    @property
    def _root(self) -> str:
        return f"{self.storage.layout.prefix}resumable/"

    # -- records ------------------------------------------------------------------------------------

    async def _read_record(self, upload_id: str) -> Progress | None:
        raw = await read_small(await self.storage.clients.get(), self.storage.bucket, self.path(upload_id))
        return None if raw is None else Progress.from_json(raw)

    @s3_errors
    async def load(self, upload_id: str) -> Progress | None:
        """The record, with a commit whose process died after the file's record was written (so the file is
        visible) but before ``committed`` was saved noted now: finishing again then adopts that file instead
        of committing the same bytes as a second one."""
        progress = await self._read_record(upload_id)
        if (progress is not None and progress.committed is None and progress.committing is not None
                and await self._owned_by_a_file(progress)):
            progress.committed, progress.committing = progress.committing, None
            await self.save(progress)
        return progress

    def as_upload(self, record: Progress) -> ResumableUpload:
        return record.public()

    @s3_errors
    async def save(self, progress: Progress, *, create: bool = False) -> None:
        client = await self.storage.clients.get()
        try:
            await client.put_object(Bucket=self.storage.bucket, Key=self.path(progress.id), Body=progress.to_json(),
                                    ContentType="application/json", **({"IfNoneMatch": "*"} if create else {}))
        except ClientError as error:
            if create and is_precondition_failed(error):
                raise ObjectExists(progress.id) from error
            raise

    @s3_errors
    async def create(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        """The record names its blob before any multipart upload exists, so the sweep never takes it for an orphan."""
        progress = Progress(upload_id, info, new_blob_id())
        await self.save(progress, create=True)
        return progress.public()

    @s3_errors
    async def set_info(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        progress = await self.require(upload_id)
        progress.info = info
        await self.save(progress)
        return progress.public()

    @s3_errors
    async def list(self) -> list[ResumableUpload]:
        return [progress.public() for progress in await self._all()]

    async def _all(self) -> builtins.list[Progress]:
        client = await self.storage.clients.get()
        found = []
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.storage.bucket, Prefix=self._root)
        async for page in pages:
            for item in page.get("Contents", []):
                if item["Key"].endswith("/record"):
                    progress = await self._read_record(item["Key"][len(self._root):-len("/record")])
                    if progress is not None:
                        found.append(progress)
        return found

    @s3_errors
    async def blob_ids(self) -> set[str]:
        """Blobs that uploads in progress are writing (the sweep must not abort their multipart uploads)."""
        return {progress.blob_id for progress in await self._all() if progress.committed is None}

    # -- appending ----------------------------------------------------------------------------------

    @s3_errors
    async def open_append(self, upload_id: str, offset: int) -> S3Append:
        progress = await self.require(upload_id)
        self.expect_offset(progress.public(), offset, sealed=progress.sealed)
        return S3Append(self, progress, await self._read_tail(progress))

    async def _read_tail(self, progress: Progress) -> bytes:
        if progress.tail is None:
            return b""
        client = await self.storage.clients.get()
        response = await client.get_object(Bucket=self.storage.bucket, Key=self.path(progress.id, progress.tail))
        async with response["Body"] as body:
            return await body.read()

    # -- reading, finishing, removing ---------------------------------------------------------------

    @s3_errors
    async def read(self, upload_id: str) -> AsyncIterator[bytes]:
        """The bytes so far (of a finished partial upload, for concatenation): seals it, then streams the blob."""
        progress = await self.uncommitted(upload_id)
        await self.seal(progress)
        if progress.offset == 0:
            return
        client = await self.storage.clients.get()
        response = await client.get_object(Bucket=self.storage.bucket, Key=self.storage.layout.blob(progress.blob_id))
        async with response["Body"] as body:
            async for chunk in body.iter_chunks(256 * 1024):
                yield chunk

    @s3_errors
    async def seal(self, progress: Progress) -> None:
        """Tail as the last part, multipart upload completed: the bytes become the blob. Idempotent."""
        if progress.sealed:
            return
        size = progress.offset  # before the tail joins the parts: counted after, it would count twice
        client = await self.storage.clients.get()
        bucket, blob = self.storage.bucket, self.storage.layout.blob(progress.blob_id)
        tail = self.path(progress.id, progress.tail) if progress.tail else None
        if progress.multipart is not None and not progress.parts and not tail:  # nothing was kept after all
            await client.abort_multipart_upload(Bucket=bucket, Key=blob, UploadId=progress.multipart)
            progress.multipart = None
        if progress.multipart is None:
            if tail:
                await client.copy_object(Bucket=bucket, Key=blob, CopySource={"Bucket": bucket, "Key": tail})
            else:
                await client.put_object(Bucket=bucket, Key=blob, Body=b"")
        else:
            parts = list(progress.parts)
            if tail:
                number = len(parts) + 1
                copied = await client.upload_part_copy(Bucket=bucket, Key=blob, UploadId=progress.multipart,
                                                       PartNumber=number, CopySource={"Bucket": bucket, "Key": tail})
                parts.append((number, copied["CopyPartResult"]["ETag"], progress.tail_size))
            try:
                await client.complete_multipart_upload(
                    Bucket=bucket, Key=blob, UploadId=progress.multipart,
                    MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for number, etag, _ in parts]})
            except ClientError as error:  # completed before, by a process that died before saving the record
                if not is_missing(error) or await self._size(blob) != sum(length for _, _, length in parts):
                    raise
            progress.multipart = None
        progress.parts, progress.tail, progress.tail_size = [(1, "", size)], None, 0
        progress.sealed = True
        await self.save(progress)
        if tail:
            await client.delete_object(Bucket=bucket, Key=tail)

    async def _size(self, name: str) -> int | None:
        client = await self.storage.clients.get()
        try:
            return (await client.head_object(Bucket=self.storage.bucket, Key=name))["ContentLength"]
        except ClientError as error:
            if is_missing(error):
                return None
            raise

    def staged(self, record: Progress, hasher: Any | None) -> S3ResumableObject:
        return S3ResumableObject(self, record, hasher)

    @s3_errors
    async def remove(self, upload_id: str) -> bool:
        """The record, tails and multipart upload go; the blob too, unless a file already owns it."""
        progress = await self._read_record(upload_id)
        if progress is None:
            return False
        client = await self.storage.clients.get()
        bucket = self.storage.bucket
        if not await self._owned_by_a_file(progress):
            if progress.multipart is not None:
                try:
                    await client.abort_multipart_upload(Bucket=bucket, Key=self.storage.layout.blob(progress.blob_id),
                                                        UploadId=progress.multipart)
                except ClientError as error:
                    if not is_missing(error):
                        raise
            await client.delete_object(Bucket=bucket, Key=self.storage.layout.blob(progress.blob_id))
        prefix = self.path(upload_id, "")
        async for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["Key"] != self.path(upload_id):
                    await client.delete_object(Bucket=bucket, Key=item["Key"])
        await client.delete_object(Bucket=bucket, Key=self.path(upload_id))  # the record last: it names the rest
        return True

    async def _owned_by_a_file(self, progress: Progress) -> bool:
        key = progress.committed or progress.committing
        record = await self.storage.records.get(key) if key else None
        return record is not None and record.blob_id == progress.blob_id


class S3Append(Appending):
    """One append: tail + new bytes cut into full parts; what is left becomes the new tail at ``keep``.

    The running sha256 covers exactly the stored bytes: the old tail is in it already (``_hashed``), new bytes
    are hashed in a worker thread as their part or tail is written, and a failed part upload drops the hash
    (and the bytes after it, which can no longer follow on) so that ``finish`` reads the blob back instead.
    """

    def __init__(self, uploads: S3ResumableUploads, progress: Progress, tail: bytes) -> None:
        self.uploads = uploads
        self.progress = progress
        self.old_tail = progress.tail
        self._chunks = [tail] if tail else []
        self._buffered = len(tail)
        self._hashed = len(tail)
        self._received = 0
        self._broken = False

    @s3_errors
    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._chunks.append(bytes(chunk))
        self._buffered += len(chunk)
        self._received += len(chunk)
        size = part_size(len(self.progress.parts) + 1)
        while self._buffered >= size:
            data = b"".join(self._chunks)
            self._chunks, self._buffered = ([data[size:]] if len(data) > size else []), len(data) - size
            await self._upload_part(data[:size])
            size = part_size(len(self.progress.parts) + 1)

    async def flush(self) -> None:
        """Nothing: full parts are sent as they fill, and the rest is the tail that ``keep`` writes."""

    async def _digest(self, data: bytes) -> str:
        skip, self._hashed = min(self._hashed, len(data)), max(0, self._hashed - len(data))
        return await asyncio.to_thread(_digest, self.hasher, data, skip)

    async def _upload_part(self, data: bytes) -> None:
        storage = self.uploads.storage
        client = await storage.clients.get()
        blob = storage.layout.blob(self.progress.blob_id)
        try:
            if self.progress.multipart is None:
                created = await client.create_multipart_upload(Bucket=storage.bucket, Key=blob)
                self.progress.multipart = created["UploadId"]
                await self.uploads.save(self.progress)  # so that a delete can abort it, whatever happens next
            number = len(self.progress.parts) + 1
            md5 = await self._digest(data)
            response = await client.upload_part(Bucket=storage.bucket, Key=blob, UploadId=self.progress.multipart,
                                                PartNumber=number, Body=data, ContentMD5=md5)
        except BaseException:
            self._broken, self.hasher, self._chunks, self._buffered = True, None, [], 0
            raise
        self.progress.parts.append((number, response["ETag"], len(data)))
        self.progress.tail, self.progress.tail_size = None, 0  # the old tail's bytes are in this part now

    @s3_errors
    async def keep(self, *, cut: bool) -> ResumableUpload:
        """Write the remainder as the new tail, then the record that counts it; then drop the old tail."""
        if self._received == 0 or (self._broken and self.progress.tail == self.old_tail):
            return self.progress.public()  # nothing new is stored
        storage = self.uploads.storage
        client = await storage.clients.get()
        rest = b"".join(self._chunks)
        if rest:
            name = f"tail-{new_blob_id()}"
            await self._digest(rest)
            await client.put_object(Bucket=storage.bucket, Key=self.uploads.path(self.progress.id, name), Body=rest)
            self.progress.tail, self.progress.tail_size = name, len(rest)
        await self.uploads.save(self.progress)
        if self.old_tail is not None and self.old_tail != self.progress.tail:
            await client.delete_object(Bucket=storage.bucket, Key=self.uploads.path(self.progress.id, self.old_tail))
        return self.progress.public()

    async def discard(self) -> None:
        """Nothing: the record still says what it said before, and parts it does not list are never used."""


def _digest(hasher: Any | None, data: bytes, skip: int) -> str:
    """Runs in a worker thread: the running sha256 takes the bytes it has not seen; returns the Content-MD5."""
    if hasher is not None:
        hasher.update(memoryview(data)[skip:])
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class S3ResumableObject(StagedUpload):
    """A finished upload as a staged object: ``seal`` completes its blob, ``place`` gives the blob to a file."""

    def __init__(self, uploads: S3ResumableUploads, progress: Progress, hasher: Any | None) -> None:
        super().__init__(progress.public(), hasher)
        self._uploads = uploads
        self._progress = progress

    @s3_errors
    async def seal(self) -> None:
        await self._uploads.seal(self._progress)

    async def rehash(self) -> Any:
        """Appended by other workers, or before a restart: read the blob back once."""
        hasher = hashlib.sha256()
        async for chunk in self._uploads.read(self.upload.id):
            await asyncio.to_thread(hasher.update, chunk)
        return hasher

    @s3_errors
    async def note_committing(self, key: str) -> None:
        self._progress.committing = key
        await self._uploads.save(self._progress)

    @s3_errors
    async def place(self, stored: StoredObject) -> None:
        """The file's record, pointing at the upload's blob (a conditional write, like any commit)."""
        record = Record(stored.key, self._progress.blob_id, stored.size, stored.sha256, stored.created_at,
                        stored.metadata)
        await self._uploads.storage.records.put(record, create=True)

    @s3_errors
    async def note_committed(self, key: str) -> None:
        self._progress.committed, self._progress.committing = key, None
        await self._uploads.save(self._progress)
