"""Object records: the small JSON object per key whose existence makes an object visible."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from upload_service.storage import ObjectExists, StoredObject

from .client import ClientHolder, is_precondition_failed, read_small
from .layout import Layout


@dataclass(frozen=True)
class Record:
    """What ``objects/<key>`` holds: which blob has the bytes, and what the core knows of them."""

    key: str
    blob_id: str
    size: int
    sha256: str
    created_at: datetime
    metadata: dict[str, Any]

    def to_json(self) -> bytes:
        return json.dumps({"blob": self.blob_id, "size": self.size, "sha256": self.sha256,
                           "created_at": self.created_at.isoformat(), "metadata": self.metadata},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, key: str, raw: bytes) -> Record:
        data = json.loads(raw)
        return cls(key=key, blob_id=data["blob"], size=data["size"], sha256=data["sha256"],
                   created_at=datetime.fromisoformat(data["created_at"]), metadata=data.get("metadata", {}))

    def stored(self) -> StoredObject:
        return StoredObject(self.key, self.size, self.sha256, self.created_at, self.metadata)


class Records:
    def __init__(self, clients: ClientHolder, layout: Layout, bucket: str) -> None:
        self.clients = clients
        self.layout = layout
        self.bucket = bucket

    async def get(self, key: str) -> Record | None:
        raw = await read_small(await self.clients.get(), self.bucket, self.layout.record(key))
        return None if raw is None else Record.from_json(key, raw)

    async def put(self, record: Record, *, create: bool) -> None:
        """Write a record; ``create=True`` is a conditional write that fails with ``ObjectExists`` if taken."""
        client = await self.clients.get()
        extra = {"IfNoneMatch": "*"} if create else {}
        try:
            await client.put_object(Bucket=self.bucket, Key=self.layout.record(record.key), Body=record.to_json(),
                                    ContentType="application/json", **extra)
        except ClientError as error:
            if create and is_precondition_failed(error):
                raise ObjectExists(record.key) from error
            raise

    async def delete(self, key: str) -> None:
        client = await self.clients.get()
        await client.delete_object(Bucket=self.bucket, Key=self.layout.record(key))
