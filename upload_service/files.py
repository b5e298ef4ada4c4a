"""Files as the service sees them: ids, owners, temporary or persistent, and where each lives in storage.

Storage keys are ``files/<owner hash>/<id>`` and ``temp/<owner hash>/<id>``. Ids start with an inverted
millisecond timestamp, so ascending key order (what every storage lists cheaply) is newest first, and ties
are broken by the random rest of the id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import ObjectExists, ObjectNotFound
from .identity import Identity, owner_key
from .randomness import random_bits
from .storage import Storage, StoredObject

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from contextlib import AbstractAsyncContextManager

log = logging.getLogger("upload_service")

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # ascending in ASCII, so encoded order = numeric order
_TIME_DIGITS = 10
_MAX_TIME = 32**_TIME_DIGITS - 1
PERSISTENT, TEMPORARY = "files", "temp"
FILE_ID_PATTERN = f"^[{_ALPHABET}]{{20}}$"  # what ``new_file_id`` makes, for the OpenAPI document


def _encode(number: int, digits: int) -> str:
    out = []
    for _ in range(digits):
        number, rest = divmod(number, 32)
        out.append(_ALPHABET[rest])
    return "".join(reversed(out))


def new_file_id(now: float | None = None, rest: int | None = None) -> str:
    """20 url-safe characters: inverted time (newest sorts first) then 50 random bits (``rest``: 50 bits of the
    caller's, for an id that must come out the same again)."""
    millis = int((time.time() if now is None else now) * 1000)
    return _encode(_MAX_TIME - millis, _TIME_DIGITS) + _encode(random_bits(50) if rest is None else rest, 10)


def is_file_id(value: str) -> bool:
    return len(value) == 20 and all(char in _ALPHABET for char in value)


def file_key(owner: str, file_id: str, *, temporary: bool) -> str:
    return f"{TEMPORARY if temporary else PERSISTENT}/{owner}/{file_id}"


@dataclass(frozen=True)
class UploadInfo:
    """What ``validate_upload`` sees of an upload before any byte is stored."""

    filename: str
    content_type: str
    size: int | None
    temporary: bool


@dataclass(frozen=True)
class StoredFile:
    """A committed file and its description, as hooks and the API see it."""

    id: str
    key: str
    owner: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime
    temporary: bool
    expires_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_stored(cls, stored: StoredObject) -> StoredFile:
        meta = stored.metadata
        area, _, file_id = stored.key.split("/")
        expires = meta.get("expires_at")
        return cls(
            id=file_id,
            key=stored.key,
            owner=meta.get("owner", ""),
            filename=meta.get("filename", file_id),
            content_type=meta.get("content_type", "application/octet-stream"),
            size=stored.size,
            sha256=stored.sha256,
            created_at=stored.created_at,
            temporary=area == TEMPORARY,
            expires_at=datetime.fromisoformat(expires) if expires and area == TEMPORARY else None,
            metadata=meta.get("metadata", {}),
        )

    def storage_metadata(self) -> dict[str, Any]:
        """The dict a backend keeps beside the bytes."""
        return {
            "owner": self.owner,
            "filename": self.filename,
            "content_type": self.content_type,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "metadata": self.metadata,
        }

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    def with_metadata(self, metadata: dict[str, Any]) -> StoredFile:
        return replace(self, metadata=metadata)


@dataclass(frozen=True)
class TusGrant:
    """What a ``register_tus_endpoints`` endpoint lets one request do: upload as ``identity`` (the files and the
    quota are theirs), within ``scope`` (uploads made under one scope are found only under it), each file
    starting with ``metadata``, at most ``max_size`` bytes, and, when ``admission`` is given, committed only
    inside ``async with admission():`` (count the file there; raising refuses it); ``received(file)`` is called
    with each file made."""

    identity: Identity
    scope: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    max_size: int | None = None
    admission: Callable[[], AbstractAsyncContextManager[None]] | None = None
    received: Callable[[StoredFile], None] | None = None


class FileStore:
    """Owner-scoped access to files on top of any storage backend."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def get(self, identity: Identity, file_id: str) -> StoredFile | None:
        """The caller's file, persistent or temporary; None for unknown ids and other people's files."""
        if not is_file_id(file_id):
            return None
        for temporary in (False, True):
            stored = await self.storage.stat(file_key(identity.owner_key, file_id, temporary=temporary))
            if stored is not None:
                found = StoredFile.from_stored(stored)
                return None if found.expired() else found
        return None

    async def page(self, identity: Identity, *, temporary: bool, limit: int,
                   cursor: str | None) -> tuple[list[StoredFile], str | None]:
        """One page of the caller's files, newest first, and the cursor of the next page (None at the end)."""
        prefix = f"{TEMPORARY if temporary else PERSISTENT}/{identity.owner_key}/"
        start_after = prefix + cursor if cursor and is_file_id(cursor) else None
        found = await self.storage.list(prefix, start_after=start_after, limit=limit + 1)
        files = [StoredFile.from_stored(stored) for stored in found]
        files = [item for item in files if not item.expired()]
        next_cursor = files[limit - 1].id if len(found) > limit and len(files) >= limit else None
        return files[:limit], next_cursor

    async def all_temporary(self) -> AsyncIterator[StoredFile]:
        """Every temporary file of every owner (for the cleanup sweep)."""
        after = None
        while True:
            batch = await self.storage.list(f"{TEMPORARY}/", start_after=after, limit=500)
            for stored in batch:
                yield StoredFile.from_stored(stored)
            if len(batch) < 500:
                return
            after = batch[-1].key

    async def expired_temporary(self, now: datetime | None = None) -> AsyncIterator[StoredFile]:
        """Every temporary file of every owner that expired by ``now``: from the backend's ``list_expired`` when it
        has one (an index), else by reading them all."""
        now = now or datetime.now(UTC)
        finder = getattr(self.storage, "list_expired", None)
        if finder is None:
            async for file in self.all_temporary():
                if file.expired(now):
                    yield file
            return
        after = None
        while True:
            batch = await finder(f"{TEMPORARY}/", now, start_after=after, limit=500)
            for stored in batch:
                file = StoredFile.from_stored(stored)
                if file.expired(now):
                    yield file
            if len(batch) < 500:
                return
            after = batch[-1].key

    async def delete(self, file: StoredFile) -> bool:
        return await self.storage.delete(file.key)

    async def persist(self, file: StoredFile, metadata: dict[str, Any]) -> StoredFile:
        """Move a temporary file to the persistent area; exactly one of several racing calls succeeds.

        Raises ``ObjectNotFound`` when the temporary file is gone (persisted or swept meanwhile).
        """
        target = file_key(owner_key(file.owner), file.id, temporary=False)
        persisted = replace(file, key=target, temporary=False, expires_at=None, metadata={**file.metadata, **metadata})
        try:
            stored = await self.storage.move(file.key, target, persisted.storage_metadata())
        except ObjectExists as error:
            raise ObjectNotFound(file.key) from error
        return StoredFile.from_stored(stored)

    async def persist_all(self, moves: list[tuple[StoredFile, dict[str, Any]]]) -> list[StoredFile]:
        """``persist`` each temporary file with its metadata, all or none: when one fails (``ObjectNotFound`` for a
        file persisted or swept meanwhile, a storage error, a cancelled request), the files already moved are
        moved back, with the metadata and expiry they had, before the error is raised."""
        done: list[tuple[StoredFile, StoredFile]] = []
        try:
            for file, metadata in moves:
                done.append((file, await self.persist(file, metadata)))
        except BaseException:
            await asyncio.shield(self._unpersist(done))
            raise
        return [persisted for _, persisted in done]

    async def _unpersist(self, done: list[tuple[StoredFile, StoredFile]]) -> None:
        for original, persisted in reversed(done):
            try:
                await self.storage.move(persisted.key, original.key, original.storage_metadata())
            except Exception:  # the owner deleted it meanwhile, or the storage is down: it stays persistent
                log.exception("could not make %s temporary again after a failed persist", persisted.key)
