"""Share and request records in the service's storage, found by their token or by their owner.

Layout (beside the owner's files, so a deployment on S3 keeps them in the bucket every instance reads):
``shares/<owner>/<id>`` and ``requests/<owner>/<id>`` hold the records (the metadata of an empty object), and
``links/<sha256 of the token>`` points from a token to its record. Only the token's hash names the pointer, so a
listing of the storage shows no usable link. Counters change under the service's locker, read-modify-write, so
two instances behind a load balancer never let one download more through than the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from upload_service import ObjectExists, Problem, owner_key

from .records import REQUEST, SHARE, FileRequest, Share, record_from_metadata

if TYPE_CHECKING:
    from upload_service import UploadService

T = TypeVar("T")
R = TypeVar("R", Share, FileRequest)
AREAS = {SHARE: "shares", REQUEST: "requests"}
POINTERS = "links"
TOKEN_BYTES = 24  # 192 bits, url-safe base64: 32 characters
LIST_PAGE = 500
TOKEN_FORM = re.compile(r"[A-Za-z0-9_-]{16,128}")
ID_FORM = re.compile(r"[0-9a-z]{20}")  # what new_file_id makes


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LinkStore:
    """Create, find, change and remove share and request records."""

    def __init__(self, service: UploadService) -> None:
        self.service = service

    @staticmethod
    def key(kind: str, owner: str, record_id: str) -> str:
        return f"{AREAS[kind]}/{owner}/{record_id}"

    def key_of(self, record: Share | FileRequest) -> str:
        return self.key(record.kind, owner_key(record.owner_id), record.id)

    async def create(self, record: Share | FileRequest) -> None:
        """Store the record, then the pointer its token is found by (a crash between leaves an unreachable record
        that its owner still sees and can revoke, never a pointer to nothing)."""
        storage = self.service.storage
        async with storage.writer() as writer:
            await writer.commit(self.key_of(record), record.to_metadata())
        pointer = {"kind": record.kind, "owner": owner_key(record.owner_id), "id": record.id}
        try:
            async with storage.writer() as writer:
                await writer.commit(f"{POINTERS}/{_digest(record.token)}", pointer)
        except ObjectExists:  # 192 random bits: only a broken random source gets here
            await storage.delete(self.key_of(record))
            raise

    async def find(self, token: str) -> Share | FileRequest | None:
        """The live record a token names; None for unknown, malformed and revoked tokens alike."""
        if not TOKEN_FORM.fullmatch(token):
            return None
        pointer = await self.service.storage.stat(f"{POINTERS}/{_digest(token)}")
        if pointer is None:
            return None
        meta = pointer.metadata
        if meta.get("kind") not in AREAS:
            return None
        record = await self._load(self.key(meta["kind"], meta["owner"], meta["id"]))
        if record is None or not hmac.compare_digest(record.token.encode(), token.encode()):
            return None
        return record

    async def get(self, kind: str, owner: str, record_id: str) -> Share | FileRequest | None:
        if not ID_FORM.fullmatch(record_id):
            return None
        return await self._load(self.key(kind, owner, record_id))

    async def own(self, kind: type[R], owner: str, record_id: str) -> R:
        """One of the caller's records of this kind, or 404 (another's looks like one that does not exist)."""
        record = await self.get(kind.kind, owner, record_id)
        if not isinstance(record, kind):
            raise Problem(404, f"no such {'share' if kind is Share else 'file request'}", reason="not_found")
        return record

    async def owned(self, kind: str, owner: str) -> list[Share | FileRequest]:
        """Every record of one kind of an owner, newest first."""
        records: list[Share | FileRequest] = []
        after = None
        while True:
            page = await self.service.storage.list(f"{AREAS[kind]}/{owner}/", start_after=after, limit=LIST_PAGE)
            records.extend(record_from_metadata(stored.metadata) for stored in page)
            if len(page) < LIST_PAGE:
                break
            after = page[-1].key
        return sorted(records, key=lambda record: (record.created_at, record.id), reverse=True)

    async def expired_long_ago(self, kind: str, before: datetime) -> AsyncIterator[Share | FileRequest]:
        """Every record of one kind, of every owner, that expired before ``before`` (for the sweep)."""
        after = None
        while True:
            page = await self.service.storage.list(f"{AREAS[kind]}/", start_after=after, limit=LIST_PAGE)
            for stored in page:
                record = record_from_metadata(stored.metadata)
                if record.expires_at is not None and record.expires_at < before:
                    yield record
            if len(page) < LIST_PAGE:
                return
            after = page[-1].key

    async def remove(self, record: Share | FileRequest) -> bool:
        """Revoke: the pointer goes first, so the link stops working even if removing the record fails."""
        await self.service.storage.delete(f"{POINTERS}/{_digest(record.token)}")
        return await self.service.storage.delete(self.key_of(record))

    async def change(self, record: R, edit: Callable[[R], T]) -> tuple[R, T]:
        """Run ``edit`` on the current record under its lock and save it; what ``edit`` raises aborts the change.

        Returns the record as saved and what ``edit`` returned. A record removed meanwhile raises LookupError.
        """
        key = self.key_of(record)
        async with self.service.exclusive(record.kind, record.id):
            current = await self._load(key)
            if current is None or type(current) is not type(record):
                raise LookupError(key)
            result = edit(current)
            await self.service.storage.update_metadata(key, current.to_metadata())
            return current, result

    async def _load(self, key: str) -> Share | FileRequest | None:
        stored = await self.service.storage.stat(key)
        return record_from_metadata(stored.metadata) if stored is not None else None
