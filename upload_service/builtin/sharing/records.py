"""What a share link and a file request are, as values kept beside the owner's files in the storage.

Both are small storage objects whose metadata is the record, so every instance of the service sees the same
records (local disk or S3) and a record survives restarts. Counters (downloads, files received, failed password
attempts) are part of the record and only change under the locker (see ``store.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

SHARE, REQUEST = "share", "request"


def now() -> datetime:
    return datetime.now(UTC)


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class Attempts:
    """Failed password attempts in the current window, for the link as a whole and per client address."""

    window_start: float = 0.0
    total: int = 0
    by_address: dict[str, int] = field(default_factory=dict)


@dataclass
class Link:
    """What share links and file requests have in common: an owner, a secret token, an expiry, a password."""

    id: str
    owner_id: str  # the owner's identity id (files are stored under its owner key)
    owner_name: str
    owner_provider: str
    token: str
    created_at: datetime
    expires_at: datetime | None = None
    password_hash: str | None = None
    attempts: Attempts = field(default_factory=Attempts)

    kind = ""

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None

    def expired(self, at: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (at or now())

    def to_metadata(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind
        data["created_at"] = self.created_at.isoformat()
        data["expires_at"] = self.expires_at.isoformat() if self.expires_at else None
        return data

    @staticmethod
    def _common(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": data["id"], "owner_id": data["owner_id"], "owner_name": data.get("owner_name", ""),
            "owner_provider": data.get("owner_provider", ""), "token": data["token"],
            "created_at": datetime.fromisoformat(data["created_at"]), "expires_at": _moment(data.get("expires_at")),
            "password_hash": data.get("password_hash"), "attempts": Attempts(**(data.get("attempts") or {})),
        }


@dataclass
class Share(Link):
    """A link through which anyone holding it downloads some of the owner's persistent files."""

    files: list[str] = field(default_factory=list)
    max_downloads: int | None = None
    downloads: int = 0
    note: str | None = None

    kind = SHARE

    @property
    def used_up(self) -> bool:
        return self.max_downloads is not None and self.downloads >= self.max_downloads

    @property
    def downloads_left(self) -> int | None:
        return None if self.max_downloads is None else max(0, self.max_downloads - self.downloads)

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> Share:
        return cls(**cls._common(data), files=list(data.get("files") or []), max_downloads=data.get("max_downloads"),
                   downloads=int(data.get("downloads", 0)), note=data.get("note"))


@dataclass
class FileRequest(Link):
    """An upload-only link: anyone holding it adds files to the owner's files, and sees nothing of them."""

    title: str = ""
    max_files: int | None = None
    max_file_size: int | None = None
    files_received: int = 0
    claims: dict[str, list[int]] = field(default_factory=dict)  # keyed uploads' slots: id -> [slots, until]

    kind = REQUEST

    @property
    def used_up(self) -> bool:
        return self.max_files is not None and self.files_received >= self.max_files

    @property
    def files_left(self) -> int | None:
        return None if self.max_files is None else max(0, self.max_files - self.files_received)

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> FileRequest:
        return cls(**cls._common(data), title=data.get("title", ""), max_files=data.get("max_files"),
                   max_file_size=data.get("max_file_size"), files_received=int(data.get("files_received", 0)),
                   claims={attempt: [int(n) for n in claim] for attempt, claim in (data.get("claims") or {}).items()})


def record_from_metadata(data: dict[str, Any]) -> Share | FileRequest:
    return FileRequest.from_metadata(data) if data.get("kind") == REQUEST else Share.from_metadata(data)
