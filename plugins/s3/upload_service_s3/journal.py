"""Journal entries: the per-blob lock every change takes, and the note that lets a sweep recover from a crash.

An entry ``journal/<blob id>`` is created with ``If-None-Match: *`` (a conditional write: exactly one of two
racing creators wins), so holding it is holding the blob: a write, delete, move or metadata update of an
object first takes its blob's entry. The entry says what is being done (``{"op": "move", "key": ...}``), so
if the process dies the sweep can finish or undo that one operation. A holder keeps its entry fresh; an
entry older than ``S3_STAGING_TIMEOUT`` by the S3 server's clock belongs to a dead process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from upload_service.storage import StorageError

from .client import ClientHolder, is_missing, is_precondition_failed, read_small, server_time
from .layout import Layout

log = logging.getLogger("upload_service.s3")
LOCK_WAIT_SECONDS = 10.0


class BlobBusy(StorageError):
    """Another operation held the blob for longer than ``LOCK_WAIT_SECONDS``."""


@dataclass
class Entry:
    """A held journal entry; refreshed in the background while held, deleted by ``release``."""

    journal: Journal
    blob_id: str
    note: dict[str, Any]
    _keepalive: asyncio.Task[None] | None = field(default=None, repr=False)

    async def update(self, **note: Any) -> None:
        """Record what the holder is about to do (a writer notes its key just before it commits)."""
        self.note = {**self.note, **note}
        await self.journal.write(self.blob_id, self.note)

    def keep_alive(self) -> None:
        if self._keepalive is None:
            self._keepalive = asyncio.create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.journal.timeout / 4)
            try:
                await self.journal.write(self.blob_id, self.note)
            except Exception:  # a missed refresh is retried; only a long outage lets the entry go stale
                log.warning("could not refresh journal entry %s", self.blob_id, exc_info=True)

    def stop_refreshing(self) -> None:
        """Let the entry go stale, so that the sweep takes over (after a failure the holder cannot repair)."""
        task, self._keepalive = self._keepalive, None
        if task is not None:
            task.cancel()

    async def release(self) -> None:
        self.stop_refreshing()
        await self.journal.remove(self.blob_id)


@dataclass(frozen=True)
class StaleEntry:
    blob_id: str
    etag: str
    note: dict[str, Any]


class Journal:
    def __init__(self, clients: ClientHolder, layout: Layout, bucket: str, timeout: float) -> None:
        self.clients = clients
        self.layout = layout
        self.bucket = bucket
        self.timeout = timeout

    async def write(self, blob_id: str, note: dict[str, Any], *, create: bool = False) -> None:
        client = await self.clients.get()
        extra = {"IfNoneMatch": "*"} if create else {}
        await client.put_object(Bucket=self.bucket, Key=self.layout.journal(blob_id), Body=json.dumps(note).encode(),
                                ContentType="application/json", **extra)

    async def remove(self, blob_id: str) -> None:
        client = await self.clients.get()
        await client.delete_object(Bucket=self.bucket, Key=self.layout.journal(blob_id))

    async def create(self, blob_id: str, note: dict[str, Any]) -> Entry:
        """The entry of a new blob (a writer's): nobody else can know the blob yet, so it never waits."""
        await self.write(blob_id, note, create=True)
        return Entry(self, blob_id, note)

    async def lock(self, blob_id: str, note: dict[str, Any]) -> Entry:
        """Take the blob's entry, waiting (with jittered backoff) while another operation holds it."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        delay = 0.02
        while True:
            try:
                await self.write(blob_id, note, create=True)
                return Entry(self, blob_id, note)
            except ClientError as error:
                if not is_precondition_failed(error):
                    raise
            if time.monotonic() > deadline:
                raise BlobBusy(f"blob {blob_id} is busy with another operation")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.5)

    async def names(self) -> set[str]:
        """The blob ids of every entry (held or stale)."""
        return {item["Key"][len(self.layout.journals):] async for item, _ in self._listing()}

    async def stale(self) -> list[StaleEntry]:
        """Entries not refreshed for ``timeout`` seconds by the S3 server's clock: their holders are gone."""
        found: list[StaleEntry] = []
        async for item, now in self._listing():
            if now - item["LastModified"] <= timedelta(seconds=self.timeout):
                continue
            note = await self._read(item["Key"])
            if note is not None:
                found.append(StaleEntry(item["Key"][len(self.layout.journals):], item["ETag"], note))
        return found

    async def _listing(self) -> AsyncIterator[tuple[dict[str, Any], datetime]]:
        client = await self.clients.get()
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.layout.journals):
            now = server_time(page)
            for item in page.get("Contents", []):
                yield item, now

    async def _read(self, name: str) -> dict[str, Any] | None:
        raw = await read_small(await self.clients.get(), self.bucket, name)
        return None if raw is None else json.loads(raw)

    async def drop_stale(self, entry: StaleEntry) -> None:
        """Delete a stale entry unless its holder refreshed it meanwhile (``If-Match`` on its ETag)."""
        client = await self.clients.get()
        try:
            await client.delete_object(Bucket=self.bucket, Key=self.layout.journal(entry.blob_id), IfMatch=entry.etag)
        except ClientError as error:
            if not (is_missing(error) or is_precondition_failed(error)):
                raise

