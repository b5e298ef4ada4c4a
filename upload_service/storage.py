"""The storage interface every backend implements, and the key rules that keep keys path-safe.

Keys are built by the core from generated ids and owner hashes only (``files/<owner>/<id>``), never from
filenames. A backend stores bytes plus a small JSON metadata dict per key and must make every change
atomic: an object is visible whole or not at all.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_key(key: str) -> str:
    """Refuse any key that is not ``segment/segment/...`` of url-safe characters: no dots, no slashes at the ends."""
    parts = key.split("/")
    if not parts or not all(_SEGMENT.fullmatch(part) for part in parts):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix is a key followed by ``/``."""
    if not prefix.endswith("/"):
        raise ValueError(f"a prefix ends with '/': {prefix!r}")
    check_key(prefix[:-1])
    return prefix


@dataclass(frozen=True)
class StoredObject:
    """What a backend knows of one committed object."""

    key: str
    size: int
    sha256: str
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ObjectWriter(Protocol):
    """A write in progress: bytes go to a hidden staging area until ``commit``.

    Use it as ``async with storage.writer() as w``; leaving the block without ``commit`` (an error, a
    cancelled request) discards everything written. ``size`` and ``sha256`` are computed while writing.
    """

    size: int

    async def write(self, chunk: bytes) -> None: ...
    async def finish(self) -> None:
        """Write out anything buffered: after it, ``size`` and ``sha256`` are final."""
    async def commit(self, key: str, metadata: dict[str, Any]) -> StoredObject: ...
    async def abort(self) -> None: ...
    @property
    def sha256(self) -> str: ...
    async def __aenter__(self) -> ObjectWriter: ...
    async def __aexit__(self, *exc_info: Any) -> None: ...


@runtime_checkable
class Storage(Protocol):
    """A storage backend. All methods are async and safe to call from several workers at once.

    Errors: ``ObjectNotFound`` for a missing key, ``ObjectExists`` when ``move`` finds its destination taken,
    ``StorageFull`` when there is no room (the client gets 507).
    """

    name: str

    def writer(self) -> ObjectWriter:
        """Start an atomic write (see ``ObjectWriter``)."""

    async def stat(self, key: str) -> StoredObject | None:
        """The committed object under ``key``, or None."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` up to ``end`` (exclusive; None = to the end) of a committed object."""

    async def delete(self, key: str) -> bool:
        """Remove an object atomically; True if it was there. Readers that already started finish intact."""

    async def list(self, prefix: str, *, start_after: str | None = None, limit: int | None = None) -> list[StoredObject]:
        """Objects whose key starts with ``prefix``, in ascending key order, after ``start_after``."""

    async def move(self, src: str, dst: str, metadata: dict[str, Any] | None = None) -> StoredObject:
        """Atomically rename ``src`` to ``dst`` (exactly one of two racing moves wins), then replace metadata."""

    async def update_metadata(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        """Atomically replace the metadata of an object."""

    async def sweep_staging(self) -> int:
        """Remove staging leftovers of writers that died (kill -9, power loss); return how many."""

    async def check_ready(self) -> None:
        """Raise if the storage cannot be written to right now (for ``/readyz`` and start-up)."""

    # Optional methods: the core uses them when a backend has them.
    #
    # async def open(self) -> None / async def close(self) -> None
    #     Called when the service starts and stops serving (make and close a client, a connection pool).
    #
    # async def download_url(self, key: str, filename: str, content_type: str) -> str | None
    #     A short-lived URL where the client can fetch the object's bytes directly (a presigned S3 URL),
    #     served with ``filename`` as attachment and ``content_type``. When it returns a URL,
    #     ``GET /api/files/<id>/content`` answers 302 to it instead of streaming; None streams as usual.
