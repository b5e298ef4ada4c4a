"""tus concatenation: a final upload takes its partial uploads, joins them into one file, and removes them.

A partial is used once. The final takes each partial under its lock (marking it ``taken_by`` the final), so of
two finals racing for one partial only one gets it; a partial taken is gone for every other request (404), as
the tus specification lets a server do once a final upload used it. Partials are taken in id order, so finals
naming the same partials meet on the first of them instead of each taking some.

What the partials held of their owner's quota moves into the final's hold in one ledger change, so the joined
bytes are counted once: the final needs room for one more file only, and once it is a file the partials' share
is gone with them. If the final is refused (a plugin, the content policy, a quota), its partials go with it, as a
refused upload does; if it fails otherwise (storage, the client leaving), they are given back to be used again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from upload_service import (
    ObjectNotFound,
    Problem,
    QuotaExceeded,
    StoredFile,
    TusGrant,
    UploadInfo,
    UploadRejected,
    too_large,
)

from .state import LOCKS, TusUpload, hold_name

if TYPE_CHECKING:
    from .operations import TusUploads


class Concatenation:
    """One final upload ``final_id`` of ``grant.identity`` joining the partials ``part_ids``, in that order."""

    def __init__(self, uploads: TusUploads, grant: TusGrant, final_id: str, part_ids: list[str]) -> None:
        self.uploads = uploads
        self.grant = grant
        self.identity = grant.identity
        self.final_id = final_id
        self.part_ids = part_ids
        self.parts: list[TusUpload] = []

    async def join(self, info: UploadInfo) -> StoredFile:
        """Take the partials, stream them through the pipeline into one file, and remove them."""
        await self._take()
        try:
            length = sum(part.offset for part in self.parts)
            if length > self.uploads.max_size:
                raise too_large(self.uploads.max_size)
            file = await self._store(UploadInfo(info.filename, info.content_type, length, info.temporary))
        except (UploadRejected, QuotaExceeded):
            await asyncio.shield(self._remove())
            raise
        except BaseException:
            await asyncio.shield(self._give_back())
            raise
        await asyncio.shield(self._remove())
        return file

    async def _take(self) -> None:
        """Mark every partial as taken by this final, each under its lock; on any refusal give back the taken."""
        taken: dict[str, TusUpload] = {}
        try:
            for part_id in sorted(self.part_ids):
                async with self.uploads.locked(self.grant, part_id) as (part, _):
                    if not part.is_partial or not part.complete:
                        raise Problem(400, f"upload {part.id} is not a finished partial upload",
                                      reason="tus_bad_concat")
                    stored = await self.uploads.store.set_info(part.id, part.with_info(taken_by=self.final_id))
                    taken[part_id] = TusUpload(stored)
        except BaseException:
            self.parts = list(taken.values())
            await asyncio.shield(self._give_back())
            raise
        self.parts = [taken[part_id] for part_id in self.part_ids]

    async def _store(self, info: UploadInfo) -> StoredFile:
        """The joined bytes become a file, holding what the partials held (plus the file itself)."""
        hold = self.uploads.hold(self.identity, self.final_id)
        try:
            await hold.take([hold_name(part.id) for part in self.parts])
            async with self.uploads.service.batch(self.identity, temporary=info.temporary, path="tus",
                                                  hold=hold) as batch:
                await batch.add(info, self._joined())
                (file,) = await batch.commit()
        except BaseException:  # the partials' share went with the hold; a failure given back counts anew on use
            await hold.release()
            raise
        return file

    async def _joined(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            async for chunk in self.uploads.store.read(part.id):
                yield chunk

    async def _give_back(self) -> None:
        """The partials this final took are free again (unless the sweep removed one meanwhile)."""
        for part in self.parts:
            with contextlib.suppress(Problem, ObjectNotFound):
                async with self.uploads.locker.hold(LOCKS, part.id):
                    current = await self.uploads.store.get(part.id)
                    if current is not None and current.info.get("taken_by") == self.final_id:
                        info = {key: value for key, value in current.info.items() if key != "taken_by"}
                        await self.uploads.store.set_info(part.id, info)

    async def _remove(self) -> None:
        """The partials are used up: their bytes go, and their locks (their holds went to the final)."""
        for part in self.parts:
            with contextlib.suppress(Problem, ObjectNotFound):
                async with self.uploads.locker.hold(LOCKS, part.id) as lock:
                    await self.uploads.store.delete(part.id)
                    lock.forget()
