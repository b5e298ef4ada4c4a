"""Each owner's usage ledger: bytes and files stored, and what uploads in progress hold, shared by every instance.

Quotas and the limit on concurrent uploads must hold when one owner's requests land on different workers or
instances, so nothing of this lives in process memory. The ledger of an owner is a small object in the
service's storage (``usage/<owner>``, beside the owner's files; S3 when instances share S3) and every change
happens under the service's locker (the lock ``<owner>`` of the namespace ``usage``; Redis with
``LOCKER=redis``). A change reads the ledger, checks and edits it, and writes it back while holding the lock, so
N concurrent uploads cannot all see the same free room.

An upload in progress *holds* part of the quota (its declared size, or what it streamed so far) until it is
settled into the stored totals or released. Holds carry a deadline that their owner renews while working, so
the holds of an instance that died expire by themselves. The stored totals are counted from storage when the
ledger is made and again, when nothing is in progress, once they are older than ``RECOUNT_AFTER``; that heals
what a crash between storing and settling (or deleting and uncounting) left behind.

A *note* (a hold named ``note-...`` that holds nothing) says that an ``Idempotency-Key`` request may have
committed files it has not counted yet: its retry counts the files it adopts only while the note is there
(``reservations``). Notes live as long as the key; a recount, which counts every file, drops them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .files import PERSISTENT, TEMPORARY

if TYPE_CHECKING:
    from .service import UploadService

T = TypeVar("T")
AREA = "usage"
RECOUNT_AFTER = 3600.0
NOTE = "note-"


@dataclass
class Hold:
    """What one upload in progress holds: bytes, files, and whether it takes a concurrent-upload slot."""

    bytes: int = 0
    files: int = 0
    slot: bool = False
    until: float = 0.0


@dataclass
class Usage:
    """An owner's stored totals and current holds."""

    bytes: int = 0
    files: int = 0
    holds: dict[str, Hold] = field(default_factory=dict)
    counted_at: float = 0.0

    @property
    def held_bytes(self) -> int:
        return sum(hold.bytes for hold in self.holds.values())

    @property
    def held_files(self) -> int:
        return sum(hold.files for hold in self.holds.values())

    @property
    def slots(self) -> int:
        return sum(1 for hold in self.holds.values() if hold.slot)

    @property
    def in_progress(self) -> bool:
        """Whether an upload holds anything (notes aside): its files may be stored and not counted yet."""
        return any(not name.startswith(NOTE) for name in self.holds)

    def drop_expired(self, now: float) -> None:
        self.holds = {name: hold for name, hold in self.holds.items() if hold.until > now}

    def to_metadata(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "files": self.files, "counted_at": self.counted_at,
                "holds": {name: asdict(hold) for name, hold in self.holds.items()}}

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> Usage:
        holds = {name: Hold(**hold) for name, hold in (data.get("holds") or {}).items()}
        return cls(int(data.get("bytes", 0)), int(data.get("files", 0)), holds, float(data.get("counted_at", 0)))


class UsageLedger:
    """Read and change owners' ledgers in ``service.storage`` under ``service.locker``.

    Changes from one worker first queue on an in-process lock per owner, so that only changes from different
    workers or instances meet at the locker (whose waiting is polling, a few tens of milliseconds a turn).
    """

    def __init__(self, service: UploadService) -> None:
        self.service = service

    @staticmethod
    def key(owner: str) -> str:
        return f"{AREA}/{owner}"

    async def change(self, owner: str, edit: Callable[[Usage], T]) -> T:
        """Run ``edit`` on the owner's current ledger under its lock and save it; what ``edit`` raises aborts."""
        async with self.service.exclusive(AREA, owner):
            now = time.time()
            usage = await self._load(owner, now)
            result = edit(usage)
            await self.service.storage.update_metadata(self.key(owner), usage.to_metadata())
            return result

    async def read(self, owner: str) -> Usage:
        """The ledger as it is now, without expired holds (for reports; decisions go through ``change``)."""
        stored = await self.service.storage.stat(self.key(owner))
        usage = Usage.from_metadata(stored.metadata) if stored is not None else await self.count(owner)
        usage.drop_expired(time.time())
        return usage

    async def _load(self, owner: str, now: float) -> Usage:
        stored = await self.service.storage.stat(self.key(owner))
        if stored is None:
            usage = await self.count(owner)
            async with self.service.storage.writer() as writer:
                await writer.commit(self.key(owner), usage.to_metadata())
            return usage
        usage = Usage.from_metadata(stored.metadata)
        usage.drop_expired(now)
        if not usage.in_progress and now - usage.counted_at > RECOUNT_AFTER:
            usage = await self.count(owner)  # counts what notes say may be missing: they go
        return usage


    async def count(self, owner: str) -> Usage:
        """The owner's persistent and temporary files as storage has them now."""
        usage = Usage(counted_at=time.time())
        totals = getattr(self.service.storage, "totals", None)
        for area in (PERSISTENT, TEMPORARY):
            if totals is not None:  # a backend that keeps an index counts without listing
                files, size = await totals(f"{area}/{owner}/")
                usage.files += files
                usage.bytes += size
                continue
            after = None
            while True:
                page = await self.service.storage.list(f"{area}/{owner}/", start_after=after, limit=1000)
                usage.bytes += sum(stored.size for stored in page)
                usage.files += len(page)
                if len(page) < 1000:
                    break
                after = page[-1].key
        return usage

