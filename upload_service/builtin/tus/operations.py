"""What tus requests do: create, append, finish into a file, concatenate, terminate, sweep.

Finishing goes through the one upload pipeline (``UploadBatch``): commit, ``process_upload``,
``upload_persisted``, metrics, the temporary area and its token, exactly as for every other path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from quart import Request

from upload_service import (
    Identity,
    Locker,
    ObjectNotFound,
    Problem,
    QuotaExceeded,
    Reservation,
    StoredFile,
    TusGrant,
    UploadInfo,
    UploadLock,
    UploadRejected,
    complete,
    content_type_for,
    owner_key,
    safe_filename,
    too_large,
)
from upload_service.storage import OffsetMismatch, ResumableStorage

from .concatenation import Concatenation
from .protocol import (
    OFFSET_CONTENT_TYPE,
    UPLOAD_ID,
    ChunkChecksum,
    Concat,
    is_true,
    new_upload_id,
    non_negative,
    parse_metadata,
)
from .release import Released, until_released
from .state import LOCKS, TusUpload, expiry, hold_name

if TYPE_CHECKING:
    from upload_service import UploadService


STOP_WITHIN = 5.0  # after a release request, how long the append may take to store what arrived before it is cancelled


def _gone() -> Problem:
    return Problem(404, "no such upload", reason="tus_not_found")


def _conflict(offset: int) -> Problem:
    return Problem(409, f"Upload-Offset does not match the upload's offset {offset}; send HEAD to resume",
                   reason="tus_offset_mismatch", headers={"Upload-Offset": str(offset)})


def check_id(upload_id: str) -> str:
    """Only ids we could have made reach storage or the locker; anything else is simply not found."""
    if not UPLOAD_ID.fullmatch(upload_id):
        raise _gone()
    return upload_id


class TusUploads:
    """The tus uploads of one service, kept in ``store`` and serialised by ``locker``."""

    def __init__(self, service: UploadService, store: ResumableStorage, locker: Locker) -> None:
        self.service = service
        self.store = store
        self.locker = locker

    def hold(self, identity: Identity, upload_id: str) -> Reservation:
        """The upload's hold in its owner's usage ledger: it lives as long as the upload may, across requests."""
        return self.service.hold(identity, hold_name(upload_id), lease=self.ttl)

    @property
    def max_size(self) -> int:
        return self.service.settings.max_upload_size

    def limit(self, grant: TusGrant) -> int:
        """The largest upload ``grant`` may make: ``MAX_UPLOAD_SIZE``, or less if the grant says so."""
        return self.max_size if grant.max_size is None else min(self.max_size, grant.max_size)

    @property
    def ttl(self) -> float:
        return self.service.settings.tus_upload_ttl

    # -- finding --------------------------------------------------------------------------------------

    async def _owned(self, grant: TusGrant, upload_id: str) -> TusUpload:
        """The caller's upload, expired or not; 404 if unknown, someone else's (no difference shows) or a partial
        a final upload took."""
        stored = await self.store.get(check_id(upload_id))
        if (stored is None or stored.info.get("owner") != grant.identity.id or TusUpload(stored).taken
                or stored.info.get("scope") != grant.scope):  # an endpoint's uploads are found only through it
            raise _gone()
        return TusUpload(stored)

    async def find(self, grant: TusGrant, upload_id: str) -> TusUpload:
        """The caller's upload: 404 if unknown or someone else's, 410 once expired (until the sweep)."""
        upload = await self._owned(grant, upload_id)
        if upload.expired():
            raise Problem(410, "this upload has expired", reason="tus_expired")
        return upload

    @contextlib.asynccontextmanager
    async def locked(self, grant: TusGrant, upload_id: str, *,
                     expired: bool = False) -> AsyncIterator[tuple[TusUpload, UploadLock]]:
        """The caller's upload under its lock (``expired``: an expired one too, else 410).

        Whose upload it is is checked before the lock is taken, so a request for an unknown id or someone
        else's upload is 404 without asking the owner's running PATCH to let go and without leaving a lock
        file. It is checked again under the lock; an upload deleted in between leaves no lock behind either.
        """
        look = self._owned if expired else self.find
        await look(grant, upload_id)
        async with self.locker.hold(LOCKS, upload_id) as lock:
            try:
                upload = await look(grant, upload_id)
            except Problem as problem:
                if problem.status == 404:
                    lock.forget()
                raise
            yield upload, lock

    async def current(self, grant: TusGrant, upload_id: str) -> tuple[TusUpload, StoredFile | None]:
        """HEAD: the upload once any stale PATCH of its owner let go. One whose bytes all arrived but whose
        finishing was cut off (its instance died between the last chunk and the file) is finished now, so a
        client that sees the full offset also finds its file."""
        async with self.locked(grant, upload_id) as (upload, _):
            return upload, await self._finish_if_complete(grant, upload)

    # -- creating -------------------------------------------------------------------------------------

    def _length(self, request: Request, concat: Concat | None, limit: int) -> int | None:
        length = non_negative(request.headers, "Upload-Length")
        deferred = request.headers.get("Upload-Defer-Length")
        if deferred is not None and deferred != "1":
            raise Problem(400, "Upload-Defer-Length must be 1", reason="tus_bad_header")
        if (concat is None or concat.kind == "partial") and (length is None) == (deferred is None):
            raise Problem(400, "send exactly one of Upload-Length and Upload-Defer-Length: 1", reason="tus_bad_header")
        if length is not None and length > limit:
            raise too_large(limit)
        return length

    def _describe(self, request: Request, length: int | None) -> tuple[dict[str, str], UploadInfo]:
        metadata = parse_metadata(request.headers.get("Upload-Metadata"))
        name = safe_filename(metadata.get("filename") or metadata.get("name") or "upload")
        content_type = content_type_for(metadata.get("filetype") or metadata.get("type"), name)
        return metadata, UploadInfo(name, content_type, length, is_true(metadata.get("temporary")))

    async def create(self, grant: TusGrant, request: Request) -> tuple[TusUpload, StoredFile | None, bool]:
        """POST: a new upload (maybe with its first chunk, maybe a final concatenation).

        Returns the upload, the file it became if it is already complete, and whether a body was taken.
        """
        concat = Concat.parse(request.headers.get("Upload-Concat"), self.service.settings.max_files_per_request)
        if concat is not None and grant.scope is not None:
            raise Problem(400, "concatenation is not offered here", reason="tus_bad_header")
        length = self._length(request, concat, self.limit(grant))
        _, info = self._describe(request, length)
        if grant.scope is not None:
            info = replace(info, temporary=False)  # uploads on someone's behalf become their files
        if concat is not None and concat.kind == "final":
            upload, file = await self._concatenate(grant, request, concat, info)
            return upload, file, False
        if concat is None:
            await self.service.validate(info, grant.identity)
        record = TusUpload.new_info(grant.identity.id, length, request.headers.get("Upload-Metadata"), info.filename,
                                    info.content_type, info.temporary, concat.kind if concat else None, [], self.ttl)
        if grant.scope is not None:
            record.update(scope=grant.scope, file_metadata=grant.metadata)
        with_body = (request.mimetype or "").lower() == OFFSET_CONTENT_TYPE
        if with_body:
            self._check_room(request, length if length is not None else self.limit(grant))
        upload_id = new_upload_id()
        reservation = self.hold(grant.identity, upload_id)
        await reservation.add(length or 0, 0 if concat is not None else 1)  # quota checked before any byte
        try:
            upload = TusUpload(await self.store.create(upload_id, record))
        except BaseException:
            await reservation.release()
            raise
        if not with_body:
            return upload, await self._finish_if_complete(grant, upload), False
        try:
            async with self.locker.hold(LOCKS, upload.id) as lock:
                upload = await self._receive(grant, request, upload, lock)
        except BaseException:  # the client never learnt the upload's URL: it will start over
            await asyncio.shield(self._discard(grant, upload.id))
            raise
        return upload, await self._finish_if_complete(grant, upload), True

    async def _discard(self, grant: TusGrant, upload_id: str) -> None:
        """Remove an upload that will not become a file, and what it held of its owner's quota."""
        await self.store.delete(upload_id)
        await self.service.release_hold(grant.identity.owner_key, hold_name(upload_id))

    async def _concatenate(self, grant: TusGrant, request: Request, concat: Concat,
                           info: UploadInfo) -> tuple[TusUpload, StoredFile]:
        """A final upload: it takes its partials, joins them in order into one file, and removes them."""
        final_id = new_upload_id()
        file = await Concatenation(self, grant, final_id, concat.parts).join(info)
        record = TusUpload.new_info(grant.identity.id, file.size, request.headers.get("Upload-Metadata"), info.filename,
                                    info.content_type, info.temporary, "final", concat.parts, self.ttl)
        record["file_id"] = file.id
        return TusUpload(await self.store.create(final_id, record)), file

    # -- appending ------------------------------------------------------------------------------------

    async def append(self, grant: TusGrant, upload_id: str, request: Request) -> tuple[TusUpload, StoredFile | None]:
        """PATCH: check, then stream the body at the offset; finish the upload if it is now complete."""
        if (request.mimetype or "").lower() != OFFSET_CONTENT_TYPE:
            raise Problem(415, f"PATCH bodies must be {OFFSET_CONTENT_TYPE}", reason="tus_content_type")
        offset = non_negative(request.headers, "Upload-Offset")
        if offset is None:
            raise Problem(400, "Upload-Offset is required", reason="tus_bad_header")
        ChunkChecksum.from_headers(request.headers)  # a malformed checksum is refused before the lock
        async with self.locked(grant, upload_id) as (upload, lock):
            if upload.is_final:
                raise Problem(403, "a final upload cannot be patched", reason="tus_final")
            if offset != upload.offset:
                raise _conflict(upload.offset)
            upload = await self._set_length(grant, upload, request)
            upload = await self._receive(grant, request, upload, lock)
            return upload, await self._finish_if_complete(grant, upload)

    async def _set_length(self, grant: TusGrant, upload: TusUpload, request: Request) -> TusUpload:
        """creation-defer-length: the length may be given by a PATCH, once; plugins then see the size."""
        length = non_negative(request.headers, "Upload-Length")
        if length is None or length == upload.length:
            return upload
        if upload.length is not None:
            raise Problem(400, "Upload-Length cannot change once set", reason="tus_bad_header")
        if length > self.limit(grant):
            raise too_large(self.limit(grant))
        if length < upload.offset:
            raise Problem(400, "Upload-Length is smaller than what was already received", reason="tus_bad_header")
        if not upload.is_partial:
            try:
                await self.service.validate(self._info(upload, length), grant.identity)
            except UploadRejected:
                await self._discard(grant, upload.id)
                raise
        return TusUpload(await self.store.set_info(upload.id, upload.with_info(length=length)))

    async def _receive(self, grant: TusGrant, request: Request, upload: TusUpload, lock: UploadLock) -> TusUpload:
        """Stream the body into the upload; stop early (keeping what arrived) if another request takes over."""
        checksum = ChunkChecksum.from_headers(request.headers)
        room = (upload.length if upload.length is not None else self.limit(grant)) - upload.offset
        self._check_room(request, room)
        if upload.file_id:
            return upload
        reservation = self.hold(grant.identity, upload.id)
        await reservation.add(0, 0)  # renews the hold for as long as the upload itself may live
        chunks = self.service.request_body(request, room)
        if upload.length is None:  # deferred length: hold quota for the bytes as they come
            chunks = reservation.meter(chunks, upload.offset)
        if checksum is not None:
            chunks = checksum.wrap(chunks)
        if upload.due_for_refresh(self.ttl):
            upload = TusUpload(await self.store.set_info(upload.id, upload.with_info(expires_at=expiry(self.ttl))))
        try:
            async with self.service.upload_slot(grant.identity):
                with self.service.metrics.active_upload("tus"):
                    stored = await self._append_unless_released(upload, chunks, checksum, lock)
        except QuotaExceeded:  # an upload that cannot be finished within the quota is given up whole
            await asyncio.shield(self._discard(grant, upload.id))
            lock.forget()
            raise
        return TusUpload(stored)

    @staticmethod
    def _check_room(request: Request, room: int) -> None:
        if request.content_length is not None and request.content_length > room:
            raise Problem(413, f"the body is larger than the {room} bytes left in this upload", reason="too_large")

    async def _append_unless_released(self, upload: TusUpload, chunks: AsyncIterator[bytes],
                                      checksum: ChunkChecksum | None, lock: UploadLock) -> Any:
        """Append the body; when another request asks for the upload, keep what already arrived and stop (423).

        Bytes the server has read but this handler has not taken yet still count: once a release is asked for,
        the body ends with what comes without waiting (``until_released``). A storage write that does not end
        within ``STOP_WITHIN`` after that is cancelled (the storage records what it stored).
        """
        verify = checksum.verify if checksum is not None else None
        body = until_released(chunks, lock.release_requested)
        writing = asyncio.ensure_future(self.store.append(upload.id, upload.offset, body, verify))
        released = asyncio.ensure_future(lock.release_requested.wait())
        try:
            await asyncio.wait({writing, released}, return_when=asyncio.FIRST_COMPLETED)
            if not writing.done():
                await asyncio.wait({writing}, timeout=STOP_WITHIN)
        finally:
            released.cancel()
            if not writing.done():
                writing.cancel()  # the storage records what arrived; wait for that before the lock goes
                with contextlib.suppress(asyncio.CancelledError):
                    await complete(asyncio.wait({writing}))
        if writing.cancelled() or isinstance(writing.exception(), Released):
            # 423 like ``LockBusy``: tus clients retry it (a 400 ends their upload), and the retry asks for the
            # offset first. A browser may itself resend a PATCH whose kept-alive connection was reset, racing
            # the client's own retry; whichever loses must not end the upload.
            raise Problem(423, "another request for this upload took over; this one stopped",
                          title="Locked", reason="tus_interrupted")
        try:
            return writing.result()
        except OffsetMismatch:
            current = await self.store.get(upload.id)
            raise _conflict(current.offset if current else 0) from None

    # -- finishing ------------------------------------------------------------------------------------

    async def _finish_if_complete(self, grant: TusGrant, upload: TusUpload) -> StoredFile | None:
        if not upload.complete or upload.is_partial:
            return None
        if upload.file_id:
            return None
        if upload.stored.committed:  # the file was made but its instance died before noting it here
            file_id = upload.stored.committed.rsplit("/", 1)[-1]
            await self.store.set_info(upload.id, upload.with_info(file_id=file_id, expires_at=expiry(self.ttl)))
            return await self.service.files.get(grant.identity, file_id)
        return await self._finish(grant, upload)

    async def _finish(self, grant: TusGrant, upload: TusUpload) -> StoredFile:
        """The complete upload becomes a file through the pipeline; a rejected one leaves nothing behind."""
        info = self._info(upload, upload.length)
        reservation = self.hold(grant.identity, upload.id)
        try:
            info = await self.service.sniff(info, self.store.read(upload.id))
            staged = await self.store.stage(upload.id)
            await staged.finish()
            async with (grant.admission() if grant.admission else contextlib.nullcontext()), \
                    self.service.batch(grant.identity, temporary=info.temporary, path="tus", hold=reservation,
                                       metadata=upload.info.get("file_metadata")) as batch:
                batch.add_staged(info, staged)
                (file,) = await batch.commit()
        except UploadRejected:
            await self._discard(grant, upload.id)
            raise
        await self.store.set_info(upload.id, upload.with_info(file_id=file.id, expires_at=expiry(self.ttl)))
        if grant.received is not None:
            grant.received(file)
        return file

    @staticmethod
    def _info(upload: TusUpload, length: int | None) -> UploadInfo:
        return UploadInfo(upload.info["filename"], upload.info["content_type"], length, upload.info["temporary"])

    # -- terminating and sweeping ---------------------------------------------------------------------

    async def terminate(self, grant: TusGrant, upload_id: str) -> None:
        """DELETE: the upload and its bytes go (a file it already became stays: delete that via /api/files)."""
        async with self.locked(grant, upload_id, expired=True) as (_, lock):
            await self._discard(grant, upload_id)
            lock.forget()

    async def sweep(self) -> int:
        """Remove expired uploads that nobody is working on right now."""
        removed = 0
        for stored in await self.store.list():
            if not TusUpload(stored).expired():
                continue
            with contextlib.suppress(Problem, ObjectNotFound):
                async with self.locker.hold(LOCKS, stored.id, take_over=False) as lock:
                    if await self.store.delete(stored.id):
                        removed += 1
                        owner = owner_key(stored.info.get("owner", ""))
                        await self.service.release_hold(owner, hold_name(stored.id))
                    lock.forget()
        return removed
