"""An upload's hold in its owner's usage ledger, from the pipeline's side: reserve, meter, settle or release.

Before a byte is stored, an upload reserves what it declares (a file, its size when known) and, for a request,
a concurrent-upload slot; a body of unknown size reserves more room as it streams, ``GROW_STEP`` at a time (or
what is left of the quota, if that still covers what arrived). Once the files are committed the hold is settled
into the owner's totals; an upload that ends any other way (refused, failed, cut off, timed out) releases it.
With no quota and no concurrency limit configured, a reservation does nothing and costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from .concurrency import check_slot
from .quotas import Quotas
from .randomness import random_hex
from .usage import Hold, Usage

if TYPE_CHECKING:
    from .identity import Identity
    from .service import UploadService

log = logging.getLogger("upload_service.quotas")
LEASE = 60.0
RENEW_EVERY = 20.0
GROW_STEP = 8 * 1024 * 1024


class Reservation:
    """One hold (``name``) in ``identity``'s ledger; ``lease`` seconds until it expires unless renewed."""

    def __init__(self, service: UploadService, identity: Identity, name: str, *, lease: float = LEASE,
                 slot: bool = False) -> None:
        self.quotas = Quotas.from_settings(service.settings)
        self.max_slots = service.settings.max_concurrent_uploads if slot else 0
        self.ledger = service.usage
        self.owner = identity.owner_key
        self.name = name
        self.lease = lease
        self.slot = slot
        self.active = self.quotas.enabled or bool(self.max_slots)
        self.done = False

    @classmethod
    async def open(cls, service: UploadService, identity: Identity, *, slot: bool) -> Reservation:
        """A new hold for one request, taking a slot if ``slot`` (429 when the owner has none left)."""
        reservation = cls(service, identity, f"req-{random_hex(8)}", slot=slot)
        if reservation.max_slots:  # without a slot to take, the hold is made by the first ``add``
            await reservation._change(0, 0)
        return reservation

    async def add(self, more_bytes: int, more_files: int, *, base: int | None = None) -> None:
        """Hold ``more_bytes`` and ``more_files`` more (and renew the lease); ``QuotaExceeded`` if they don't fit.

        ``base``: the bytes the hold really needs so far (the files of the batch already staged); anything it
        held beyond that is given back first.
        """
        await self._change(more_bytes, more_files, base)

    async def _change(self, more_bytes: int, more_files: int, base: int | None = None) -> None:
        if not self.active:
            return

        def edit(usage: Usage) -> None:
            hold = usage.holds.get(self.name)
            if hold is None:
                check_slot(usage, self.max_slots)
                hold = usage.holds[self.name] = Hold(slot=self.slot)
            if base is not None:
                hold.bytes = min(hold.bytes, base)
            self.quotas.check(usage, more_bytes, more_files)
            hold.bytes += more_bytes
            hold.files += more_files
            hold.until = time.time() + self.lease

        await self.ledger.change(self.owner, edit)

    async def take(self, names: Iterable[str]) -> None:
        """Move what the holds ``names`` hold into this one, in one change: the owner's usage stays the same, so
        nothing is checked. An upload made of others (a tus final upload of its partials) counts their bytes once.
        """
        names = [name for name in names if name != self.name]
        if not self.active or not names:
            return

        def edit(usage: Usage) -> None:
            hold = usage.holds.setdefault(self.name, Hold(slot=self.slot))
            for name in names:
                taken = usage.holds.pop(name, None)
                if taken is not None:
                    hold.bytes += taken.bytes
                    hold.files += taken.files
            hold.until = time.time() + self.lease

        await self.ledger.change(self.owner, edit)

    async def _cover(self, covered: int, target: int) -> int:
        """Make the hold cover ``target`` bytes, ``covered`` of which arrived before; returns what it now holds.

        A hold that must grow is first trimmed to what truly arrived (an earlier step may have held more than
        was used), so the check, and the problem's figures, count exactly what is stored and streaming.
        """

        def edit(usage: Usage) -> int:
            hold = usage.holds.setdefault(self.name, Hold(slot=self.slot))
            if hold.bytes < target:
                hold.bytes = min(hold.bytes, covered)
                self.quotas.check(usage, target - hold.bytes, 0)
                room = self.quotas.room(usage) or 0
                hold.bytes += min(max(GROW_STEP, target - hold.bytes), room)
            hold.until = time.time() + self.lease
            return hold.bytes

        return await self.ledger.change(self.owner, edit)

    async def meter(self, chunks: AsyncIterator[bytes], base: int = 0) -> AsyncIterator[bytes]:
        """Pass chunks through, making the hold cover ``base`` plus what streamed before any more byte goes on.

        ``base`` is what the hold must already cover besides this stream: earlier files of the batch, or the
        bytes a tus upload stored before this request.
        """
        if not (self.active and self.quotas.max_bytes):
            async for chunk in chunks:
                yield chunk
            return
        held, seen = -1, base
        async for chunk in chunks:
            if seen + len(chunk) > held:
                held = await self._cover(seen, seen + len(chunk))
            seen += len(chunk)
            yield chunk

    async def settle(self, stored_bytes: int, stored_files: int) -> None:
        """The upload's files are stored: count them in the owner's totals instead of the hold."""
        if not self.active or self.done:
            return

        def edit(usage: Usage) -> None:
            usage.holds.pop(self.name, None)
            usage.bytes += stored_bytes
            usage.files += stored_files

        try:
            await asyncio.shield(self.ledger.change(self.owner, edit))
        except Exception:  # the files are safe; the hold expires and the next recount counts them
            log.exception("could not settle %s in the usage ledger", self.name)
        self.done = True

    async def release(self) -> None:
        """Give the hold back (the upload ended without storing anything); errors are logged, never raised."""
        if not self.active or self.done:
            return
        self.done = True
        try:
            await asyncio.shield(self.ledger.change(self.owner, lambda usage: usage.holds.pop(self.name, None)))
        except Exception:  # the hold expires at the end of its lease anyway
            log.exception("could not release %s in the usage ledger", self.name)

    @contextlib.asynccontextmanager
    async def renewing(self) -> AsyncIterator[None]:
        """Renew the lease every ``RENEW_EVERY`` seconds during the block (a long upload keeps its hold)."""
        if not self.active:
            yield
            return
        task = asyncio.create_task(self._renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew(self) -> None:
        while not self.done:
            await asyncio.sleep(RENEW_EVERY)
            try:
                await self._change(0, 0)
            except Exception:
                log.warning("could not renew %s in the usage ledger", self.name, exc_info=True)


async def forget_file(service: UploadService, owner: str, size: int) -> None:
    """A stored file is gone: take it out of its owner's totals (no-op without quotas or slots)."""
    if not Quotas.from_settings(service.settings).enabled:
        return

    def edit(usage: Usage) -> None:
        usage.bytes = max(0, usage.bytes - size)
        usage.files = max(0, usage.files - 1)

    try:
        await service.usage.change(owner, edit)
    except Exception:  # counted too high until the next recount: refusals err on the safe side
        log.exception("could not take a deleted file out of the usage ledger")


async def release_hold(service: UploadService, owner: str, name: str) -> None:
    """A hold kept across requests ended without becoming a file (terminated, refused, expired): free it."""
    if not Quotas.from_settings(service.settings).enabled:
        return
    try:
        await service.usage.change(owner, lambda usage: usage.holds.pop(name, None))
    except Exception:
        log.exception("could not release the hold %s", name)


@contextlib.asynccontextmanager
async def upload_slot(service: UploadService, identity: Identity) -> AsyncIterator[None]:
    """Hold one of the owner's concurrent-upload slots for the block (a tus request streaming its body)."""
    if not service.settings.max_concurrent_uploads:
        yield
        return
    reservation = Reservation(service, identity, f"req-{random_hex(8)}", slot=True)
    await reservation.add(0, 0)
    try:
        async with reservation.renewing():
            yield
    finally:
        await reservation.release()
