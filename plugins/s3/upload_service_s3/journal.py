"""Journal entries: the per-blob lock every change takes, with a lease, and the note that lets another process
finish or undo the change when its holder died.

An entry ``journal/<blob id>`` is created with ``If-None-Match: *`` (a conditional write: exactly one of two
racing creators wins), so holding it is holding the blob: a write, delete, move or metadata update of an object
first takes its blob's entry. The entry says what is being done (``{"op": "move", "key": ..., "dst": ...}``) and
by whom (``holder``: no two holders' entries are byte-equal, so no two have one ETag).

The lease is ``S3_STAGING_TIMEOUT``: the holder rewrites its entry every quarter of it, ``If-Match`` on its own
ETag, so an entry not rewritten for longer, by the S3 server's clock, belongs to a dead process. Whoever finds
such an entry, an operation that wants the blob or the sweep, takes it over at once with one conditional write
(``If-Match`` on the dead entry's ETag: of two takers one wins, and a holder that was only slow finds its entry
gone). The new entry keeps the dead holder's note under ``recovering`` until the taker has finished or undone
that work, so a taker that dies too leaves it to the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from upload_service.storage import StorageBusy, StorageError

from .client import ClientHolder, is_missing, is_precondition_failed, server_time
from .layout import Layout

log = logging.getLogger("upload_service.s3")
LOCK_WAIT_SECONDS = 10.0
_HOST = f"{socket.gethostname()}:{os.getpid()}"


class BlobBusy(StorageBusy):
    """Another operation held the blob for longer than ``LOCK_WAIT_SECONDS`` (the client gets 503)."""


class EntryLost(StorageError):
    """The holder's entry was taken over (it looked dead: not rewritten for a lease) or is gone."""


def _holder() -> str:
    """Who holds an entry: the host and process for operators, and a random part that makes each entry unique."""
    return f"{_HOST}:{secrets.token_hex(6)}"


@dataclass
class Entry:
    """A held journal entry; rewritten in the background while held (``keep_alive``), deleted by ``release``."""

    journal: Journal
    blob_id: str
    note: dict[str, Any]
    etag: str
    _keepalive: asyncio.Task[None] | None = field(default=None, repr=False)
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def recovering(self) -> list[dict[str, Any]]:
        """The notes of dead holders this entry was taken over from, oldest first: their work is to be finished."""
        return list(self.note.get("recovering", []))

    async def update(self, **note: Any) -> None:
        """Record what the holder is about to do (a writer notes its key just before it commits)."""
        async with self._writing:
            self.note = {**self.note, **note}
            self.etag = await self.journal.replace(self.blob_id, self.note, self.etag)

    def keep_alive(self) -> None:
        if self._keepalive is None:
            self._keepalive = asyncio.create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.journal.timeout / 4)
            try:
                async with self._writing:
                    self.etag = await self.journal.replace(self.blob_id, self.note, self.etag)
            except EntryLost:
                log.error("journal entry %s was taken over while held (not refreshed for %s s)", self.blob_id,
                          self.journal.timeout)
                return
            except Exception:  # a missed refresh is retried; only a long outage lets the entry go stale
                log.warning("could not refresh journal entry %s", self.blob_id, exc_info=True)

    def stop_refreshing(self) -> None:
        """Let the entry go stale, so that the next taker recovers (after a failure the holder cannot repair)."""
        task, self._keepalive = self._keepalive, None
        if task is not None:
            task.cancel()

    async def release(self) -> None:
        self.stop_refreshing()
        async with self._writing:
            await self.journal.remove(self.blob_id, self.etag)


@dataclass(frozen=True)
class HeldEntry:
    """An entry as someone else holds it, read with its ETag and its age by the S3 server's clock."""

    blob_id: str
    etag: str
    note: dict[str, Any]
    age: float


class Journal:
    def __init__(self, clients: ClientHolder, layout: Layout, bucket: str, timeout: float) -> None:
        self.clients = clients
        self.layout = layout
        self.bucket = bucket
        self.timeout = timeout

    async def _put(self, blob_id: str, note: dict[str, Any], **condition: str) -> str:
        client = await self.clients.get()
        response = await client.put_object(Bucket=self.bucket, Key=self.layout.journal(blob_id),
                                           Body=json.dumps(note).encode(), ContentType="application/json",
                                           **condition)
        return str(response["ETag"])

    async def write(self, blob_id: str, note: dict[str, Any], *, create: bool = False) -> str:
        """Write an entry (``create``: only if there is none); its ETag."""
        return await self._put(blob_id, note, **({"IfNoneMatch": "*"} if create else {}))

    async def replace(self, blob_id: str, note: dict[str, Any], etag: str) -> str:
        """Rewrite the entry the caller holds (its lease starts again); ``EntryLost`` if it is not ours any more."""
        try:
            return await self._put(blob_id, note, IfMatch=etag)
        except ClientError as error:
            if is_precondition_failed(error) or is_missing(error):
                raise EntryLost(f"journal entry {blob_id} is not ours any more") from error
            raise

    async def remove(self, blob_id: str, etag: str) -> None:
        """Delete the entry the caller holds, unless another process took it over meanwhile."""
        client = await self.clients.get()
        try:
            await client.delete_object(Bucket=self.bucket, Key=self.layout.journal(blob_id), IfMatch=etag)
        except ClientError as error:
            if is_precondition_failed(error):
                log.error("journal entry %s was taken over while held: left to its new holder", blob_id)
            elif not is_missing(error):
                raise

    async def create(self, blob_id: str, note: dict[str, Any]) -> Entry:
        """Take a blob's entry if nobody holds it (a new blob's writer never waits: nobody else knows the blob)."""
        mine = {**note, "holder": _holder()}
        return Entry(self, blob_id, mine, await self.write(blob_id, mine, create=True))

    async def lock(self, blob_id: str, note: dict[str, Any]) -> Entry:
        """Take the blob's entry: at once if free, by taking it over if its holder's lease ran out, else waiting
        (jittered backoff) up to ``LOCK_WAIT_SECONDS`` for the live holder; then ``BlobBusy`` says when to retry."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.02
        while True:
            try:
                return await self.create(blob_id, note)
            except ClientError as error:
                if not is_precondition_failed(error):
                    raise
            held = await self.held(blob_id)
            if held is not None and held.age > self.timeout:
                entry = await self.take_over(held, note)
                if entry is not None:
                    return entry
            if time.monotonic() > deadline:
                left = self.timeout - held.age if held is not None else 0
                log.info("blob %s stayed held by %s", blob_id, held.note.get("holder") if held else "nobody")
                raise BlobBusy("the file is being changed by other work", retry_after=math.ceil(left) + 1)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    async def take_over(self, held: HeldEntry, note: dict[str, Any]) -> Entry | None:
        """Take a dead holder's entry (``If-Match`` on the ETag it was read with); None if another process took
        it first or its holder rewrote it meanwhile. The dead holder's work is the new entry's ``recovering``."""
        dead = {name: value for name, value in held.note.items() if name not in {"recovering", "holder"}}
        mine = {**note, "holder": _holder(), "recovering": [*held.note.get("recovering", []), dead]}
        try:
            etag = await self._put(held.blob_id, mine, IfMatch=held.etag)
        except ClientError as error:
            if is_precondition_failed(error) or is_missing(error):
                return None
            raise
        log.warning("took over journal entry %s of a dead process (%s, %.0f s old)", held.blob_id,
                    held.note.get("holder", "unknown holder"), held.age)
        return Entry(self, held.blob_id, mine, etag)

    async def held(self, blob_id: str) -> HeldEntry | None:
        """The blob's entry as it is now, or None if there is none."""
        client = await self.clients.get()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=self.layout.journal(blob_id))
        except ClientError as error:
            if is_missing(error):
                return None
            raise
        async with response["Body"] as body:
            note = json.loads(await body.read())
        age = (server_time(response) - response["LastModified"]).total_seconds()
        return HeldEntry(blob_id, str(response["ETag"]), note, age)

    async def names(self) -> set[str]:
        """The blob ids of every entry (held or stale)."""
        return {item["Key"][len(self.layout.journals):] async for item, _ in self._listing()}

    async def stale(self) -> list[HeldEntry]:
        """Entries not rewritten for a lease by the S3 server's clock: their holders are gone."""
        found: list[HeldEntry] = []
        async for item, now in self._listing():
            if (now - item["LastModified"]).total_seconds() <= self.timeout:
                continue
            held = await self.held(item["Key"][len(self.layout.journals):])
            if held is not None and held.age > self.timeout:
                found.append(held)
        return found

    async def _listing(self) -> AsyncIterator[tuple[dict[str, Any], Any]]:
        client = await self.clients.get()
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.layout.journals):
            now = server_time(page)
            for item in page.get("Contents", []):
                yield item, now
