"""An upload's hold in its owner's usage ledger, from the pipeline's side: reserve, meter, settle or release.

Before a byte is stored, an upload reserves what it declares (a file, its size when known) and, for a request,
a concurrent-upload slot; a body of unknown size reserves more room as it streams, ``GROW_STEP`` at a time (or
what is left of the quota, if that still covers what arrived). Once the files are committed the hold is settled
into the owner's totals; an upload that ends any other way (refused, failed, cut off, timed out) releases it.
With no quota and no concurrency limit configured, a reservation does nothing and costs nothing.

The reservation of an ``Idempotency-Key`` request counts exactly, whenever its instance died: its hold's name
comes from the key, so a retry takes over the hold of an attempt that died, at once, rather than after its lease;
and from its first change until its files are settled, a note in the ledger (``usage.NOTE``) says that files of
this key may be stored and not counted. Settling removes the note in the same change that counts the files, so
the retry that adopts a dead attempt's files counts them only if it found the note: the dead attempt died
before settling. This costs no change of the ledger more than an upload without a key makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from .attempts import Attempt
from .concurrency import check_slot
from .quotas import Quotas
from .randomness import random_hex
from .usage import NOTE, Hold, Usage

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
        self.note_ttl = service.settings.idempotency_ttl
        self._note: tuple[str, float] | None = None  # (name, expiry) of the note of a keyed request
        self._found_note: bool | None = None  # whether the note was there before this attempt's first change
        self._take_over = False  # the hold of this name, if any, is a dead attempt's

    @classmethod
    async def open(cls, service: UploadService, identity: Identity, *, slot: bool,
                   attempt: Attempt | None = None) -> Reservation:
        """A new hold for one request, taking a slot if ``slot`` (429 when the owner has none left); in a keyed
        request's ``attempt``, named after its key and noted (see the module's docstring)."""
        name = f"req-{random_hex(8)}" if attempt is None else f"req-{attempt.tag('usage hold')}"
        reservation = cls(service, identity, name, slot=slot)
        if attempt is not None:
            reservation._take_over = True
            reservation.note(attempt)
        if reservation.max_slots:  # without a slot to take, the hold is made by the first ``add``
            await reservation._change(0, 0)
        return reservation

    def note(self, attempt: Attempt) -> None:
        """Note in the ledger, with every change from now on, that ``attempt`` may store files not counted yet."""
        self._note = (f"{NOTE}{attempt.tag('usage note')}", attempt.started + self.note_ttl)

    async def noted(self) -> None:
        """Make sure the note is in the ledger (before the first file of the attempt is committed)."""
        if self.active and self._note is not None and self._found_note is None:
            await self._change(0, 0)

    def _begin(self, usage: Usage) -> None:
        """What every change does first: take over a dead attempt's hold, and write the note."""
        if self._take_over:
            usage.holds.pop(self.name, None)
            self._take_over = False
        if self._note is not None:
            name, until = self._note
            if self._found_note is None:
                self._found_note = name in usage.holds
            usage.holds[name] = Hold(until=until)

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
            if self.done:  # a renewal that queued behind the settling change: the hold is gone, and stays so
                return
            self._begin(usage)
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
            self._begin(usage)
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
            self._begin(usage)
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

    async def settle(self, stored_bytes: int, stored_files: int, *, adopted_bytes: int = 0,
                     adopted_files: int = 0) -> None:
        """The upload's files are stored: count them in the owner's totals instead of the hold.

        ``adopted_*``: the files a dead attempt of this keyed request committed, which this retry answers with;
        counted only if that attempt did not settle them (its note was there).
        """
        if not self.active or self.done:
            return
        self.done = True
        if self._found_note:
            stored_bytes, stored_files = stored_bytes + adopted_bytes, stored_files + adopted_files

        def edit(usage: Usage) -> None:
            usage.holds.pop(self.name, None)
            if self._note is not None:
                usage.holds.pop(self._note[0], None)
            usage.bytes += stored_bytes
            usage.files += stored_files

        try:
            await asyncio.shield(self.ledger.change(self.owner, edit))
        except Exception:  # the files are safe; the hold expires and the next recount counts them
            log.exception("could not settle %s in the usage ledger", self.name)

    async def release(self) -> None:
        """Give the hold back (the upload ended without storing anything); errors are logged, never raised."""
        if not self.active or self.done:
            return
        self.done = True
        # the note goes too unless a dead attempt left it: the files it may have stored are still not counted
        names = [self.name, *([self._note[0]] if self._note is not None and self._found_note is False else [])]

        def edit(usage: Usage) -> None:
            for name in names:
                usage.holds.pop(name, None)

        try:
            await asyncio.shield(self.ledger.change(self.owner, edit))
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
