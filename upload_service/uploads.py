"""The one upload pipeline every path (JSON, multipart, raw, tus) goes through.

validate (hooks) -> reserve quota and a concurrent-upload slot -> sniff the content type from the first bytes
(allowlist/denylist) -> stream into a staging writer with the size limit (and quota) -> commit every file of the
batch -> process (hooks) -> settle the reservation -> notify. A batch is all or nothing: if any file fails,
every staged or committed file of the batch is removed, and its reservation given back, before the error
reaches the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .attempts import current_attempt
from .body import limited
from .content_types import peek
from .digests import ExpectedDigests
from .errors import ObjectExists, Problem
from .files import StoredFile, UploadInfo, file_key, new_file_id
from .hookcalls import call_all
from .identity import Identity
from .reservations import Reservation
from .storage import ObjectWriter, StoredObject

if TYPE_CHECKING:
    from .service import UploadService


def check_file_count(count: int, limit: int) -> None:
    """413 for a request with more than ``MAX_FILES_PER_REQUEST`` files: each file costs storage work and a
    staged object however small it is, so their number is bounded like their size."""
    if count > limit:
        raise Problem(413, f"a request may hold at most {limit} files; nothing of this one was stored",
                      reason="too_many_files", max_files=limit)


class UploadBatch:
    """Files received in one request; use as ``async with UploadBatch(...) as batch``.

    The batch holds a reservation in its owner's usage ledger (quotas, and a concurrent-upload slot) from
    entering to committing; a finished tus upload passes the reservation it already has instead.
    """

    def __init__(self, service: UploadService, identity: Identity, *, temporary: bool, path: str,
                 reservation: Reservation | None = None, metadata: dict[str, Any] | None = None) -> None:
        self.service = service
        self.metadata = dict(metadata or {})  # every file's metadata before process hooks (may change until commit)
        self.identity = identity
        self.temporary = temporary
        self.path = path
        self.reservation = reservation
        self._stack = AsyncExitStack()
        self._staged: list[tuple[UploadInfo, ObjectWriter]] = []
        self._staged_bytes = 0
        self._adopted: set[str] = set()  # files a dead attempt of this keyed request committed (``attempts``)

    async def __aenter__(self) -> UploadBatch:
        await self._stack.__aenter__()
        try:
            attempt = current_attempt()
            if self.reservation is None:
                self.reservation = await Reservation.open(self.service, self.identity, slot=True, attempt=attempt)
            elif attempt is not None:
                self.reservation.note(attempt)
            self._stack.push_async_callback(self.reservation.release)  # a no-op once settled
            await self._stack.enter_async_context(self.reservation.renewing())
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._stack.__aexit__(*exc_info)

    def info(self, filename: str, content_type: str, size: int | None) -> UploadInfo:
        return UploadInfo(filename=filename, content_type=content_type, size=size, temporary=self.temporary)

    async def add(self, info: UploadInfo, chunks: AsyncIterator[bytes], digests: ExpectedDigests | None = None, *,
                  max_size: int | None = None) -> None:
        """Validate one file, then stream it into staging (nothing is visible until ``commit``).

        ``max_size`` lowers ``MAX_UPLOAD_SIZE`` for this file (413 past it)."""
        assert self.reservation is not None, "use the batch as an async context manager"
        check_file_count(len(self._staged) + 1, self.service.settings.max_files_per_request)
        await self.service.validate(info, self.identity)
        await self.reservation.add(info.size or 0, 1, base=self._staged_bytes)
        limit = self.service.settings.max_upload_size
        chunks = self.reservation.meter(limited(chunks, limit if max_size is None else min(limit, max_size)),
                                        self._staged_bytes)
        with self.service.metrics.active_upload(self.path):
            policy = self.service.content_types
            if policy.active:
                head, chunks = await peek(chunks)
                info = await policy.decide(info, head)
            writer = await self._stack.enter_async_context(self.service.storage.writer())
            md5 = digests.md5_hasher() if digests else None
            async for chunk in chunks:
                if md5 is not None:
                    md5.update(chunk)
                async with self._storage_deadline():
                    await writer.write(chunk)
        async with self._storage_deadline():  # the last bytes go out under the deadline too, not in commit
            await writer.finish()
        if digests is not None:
            digests.verify(writer.sha256, md5)
        self._staged.append((info, writer))
        self._staged_bytes += writer.size

    def _storage_deadline(self) -> asyncio.Timeout:
        """A storage write that hangs (a lost connection, a stuck disk) ends in TimeoutError (504), not never:
        while the handler waits on storage, nothing else would notice the client giving up."""
        return asyncio.timeout(self.service.settings.storage_timeout)

    def add_staged(self, info: UploadInfo, staged: ObjectWriter) -> None:
        """Add bytes that were stored and validated elsewhere (a finished tus upload) to the batch's commit."""
        self._staged.append((info, staged))

    @property
    def staged_count(self) -> int:
        return len(self._staged)

    async def commit(self) -> list[StoredFile]:
        """Make every staged file visible, run ``process_upload``, and notify; all or nothing."""
        committed: list[StoredFile] = []
        assert self.reservation is not None
        await self.reservation.noted()  # a keyed request's files may be counted by its retry: say so first
        try:
            for info, writer in self._staged:
                committed.append(await self._commit_one(info, writer))
            processed = [await self.service.process(file) for file in committed]
        except BaseException:
            await asyncio.shield(self._remove(committed))
            raise
        new = [file for file in processed if file.id not in self._adopted]
        adopted = [file for file in processed if file.id in self._adopted]  # counted if the dead attempt did not
        await self.reservation.settle(sum(file.size for file in new), len(new),
                                      adopted_bytes=sum(file.size for file in adopted), adopted_files=len(adopted))
        for file in processed:
            self.service.metrics.uploaded(self.path, file.size)
            if not file.temporary:
                self.service.notify(self.service.hook.upload_persisted, file=file)
        return processed

    async def _commit_one(self, info: UploadInfo, writer: ObjectWriter) -> StoredFile:
        attempt = current_attempt()
        file_id = new_file_id() if attempt is None else attempt.file_id()
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.service.settings.temp_upload_ttl) if self.temporary else None
        draft = StoredFile(
            id=file_id, key=file_key(self.identity.owner_key, file_id, temporary=self.temporary),
            owner=self.identity.id, filename=info.filename, content_type=info.content_type,
            size=writer.size, sha256=writer.sha256, created_at=now, temporary=self.temporary, expires_at=expires,
            metadata=dict(self.metadata),
        )
        try:
            stored = await writer.commit(draft.key, draft.storage_metadata())  # no deadline: it must finish or not
        except ObjectExists:
            adopted = await self._adopt(draft.key) if attempt is not None and attempt.retrying else None
            if adopted is None:
                raise
            stored = adopted
        return StoredFile.from_stored(stored)

    async def _adopt(self, key: str) -> StoredObject | None:
        """The file a dead attempt of this keyed request committed under ``key``: this retry answers with it."""
        stored = await self.service.storage.stat(key)
        if stored is not None:
            self._adopted.add(key.rsplit("/", 1)[1])
        return stored

    async def _remove(self, files: list[StoredFile]) -> None:
        for file in files:
            await self.service.storage.delete(file.key)


async def run_process_hooks(service: UploadService, file: StoredFile) -> StoredFile:
    """``process_upload`` results merged into the file's metadata, saved once if anything changed."""
    merged: dict[str, Any] = dict(file.metadata)
    for result in await call_all(service.hook.process_upload, file=file, service=service):
        if isinstance(result, dict):
            merged.update(result)
    if merged == file.metadata:
        return file
    updated = replace(file, metadata=merged)
    stored = await service.storage.update_metadata(file.key, updated.storage_metadata())
    return replace(updated, size=stored.size, sha256=stored.sha256)  # a hook may have replaced the bytes
