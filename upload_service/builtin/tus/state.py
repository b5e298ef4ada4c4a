"""What the tus layer keeps about one upload (``ResumableUpload.info``), read through typed properties."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from upload_service.storage import ResumableUpload

LOCKS = "tus"  # the locker namespace of tus uploads: lock names are upload ids


def hold_name(upload_id: str) -> str:
    """The upload's hold in its owner's usage ledger."""
    return f"tus-{upload_id}"


@dataclass(frozen=True)
class TusUpload:
    """A stored upload as the protocol sees it. ``info`` keys: owner, length (None while deferred),
    metadata (the raw Upload-Metadata header, echoed on HEAD), filename, content_type, temporary,
    concat (None, "partial" or "final"), parts, expires_at, file_id (once it became a file), taken_by (a partial
    a final upload took: gone for every request from then on)."""

    stored: ResumableUpload

    @staticmethod
    def new_info(owner: str, length: int | None, metadata: str | None, filename: str, content_type: str,
                 temporary: bool, concat: str | None, parts: list[str], ttl: float) -> dict[str, Any]:
        return {"owner": owner, "length": length, "metadata": metadata, "filename": filename,
                "content_type": content_type, "temporary": temporary, "concat": concat, "parts": parts,
                "expires_at": expiry(ttl), "file_id": None}

    @property
    def id(self) -> str:
        return self.stored.id

    @property
    def info(self) -> dict[str, Any]:
        return self.stored.info

    @property
    def owner(self) -> str:
        return self.info["owner"]

    @property
    def length(self) -> int | None:
        return self.info["length"]

    @property
    def offset(self) -> int:
        """Bytes received; a final upload is whole from its creation."""
        if self.is_final and self.file_id:
            return self.length or 0
        return self.stored.offset

    @property
    def is_partial(self) -> bool:
        return self.info["concat"] == "partial"

    @property
    def is_final(self) -> bool:
        return self.info["concat"] == "final"

    @property
    def taken(self) -> bool:
        return bool(self.info.get("taken_by"))

    @property
    def file_id(self) -> str | None:
        return self.info.get("file_id")

    @property
    def complete(self) -> bool:
        return self.length is not None and self.offset == self.length

    @property
    def expires_at(self) -> datetime:
        return datetime.fromisoformat(self.info["expires_at"])

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or datetime.now(UTC))

    def due_for_refresh(self, ttl: float) -> bool:
        """Activity pushes the expiry out; rewriting it at most every ``ttl / 10`` (a minute at most) is plenty."""
        left = (self.expires_at - datetime.now(UTC)).total_seconds()
        return left < ttl - min(60.0, ttl / 10)

    def with_info(self, **changes: Any) -> dict[str, Any]:
        return {**self.info, **changes}


def expiry(ttl: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=ttl)).isoformat()
