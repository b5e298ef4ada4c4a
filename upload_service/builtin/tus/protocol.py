"""The tus 1.0.0 wire format: versions, extensions, and parsing of the request headers.

Every parser answers malformed input with a 400 problem, so the routes only deal with valid values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from upload_service import Problem

TUS_VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "termination", "concatenation",
              "checksum", "expiration")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
CHECKSUMS: dict[str, Callable[[], Any]] = {
    "sha1": lambda: hashlib.sha1(usedforsecurity=False),
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "sha256": hashlib.sha256,
}
EXPOSED_HEADERS = ("Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, "
                   "Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, Upload-Concat, "
                   "Upload-Expires, Upload-File-Id, Upload-Token")
ID_BYTES = 18  # an upload id is this many random bytes, url-safe base64: 24 characters, never anything else
UPLOAD_ID_PATTERN = r"[A-Za-z0-9_-]{24}"
UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)
MAX_PART_URL = 2048  # characters of one URL in Upload-Concat: bounds the header with the number of parts
_METADATA_KEY = re.compile(r"[\x21-\x7e]+")
_TRUE = {"1", "true"}


def new_upload_id() -> str:
    """A fresh upload id (``UPLOAD_ID`` matches exactly these)."""
    return secrets.token_urlsafe(ID_BYTES)


def check_version(headers: Any) -> None:
    """412 unless the client speaks our version (every request but OPTIONS must say which)."""
    if headers.get("Tus-Resumable") != TUS_VERSION:
        raise Problem(412, f"send Tus-Resumable: {TUS_VERSION}", reason="tus_version",
                      headers={"Tus-Version": TUS_VERSION})


def non_negative(headers: Any, name: str) -> int | None:
    """A header holding a non-negative decimal integer, or None when absent."""
    value = headers.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 20:
        raise Problem(400, f"{name} must be a non-negative integer", reason="tus_bad_header")
    return int(value)


def parse_metadata(value: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value may be absent)."""
    found: dict[str, str] = {}
    for pair in (value or "").split(","):
        if not pair.strip():
            continue
        parts = pair.strip().split(" ")
        key = parts[0]
        if len(parts) > 2 or not _METADATA_KEY.fullmatch(key) or key in found:
            raise Problem(400, "Upload-Metadata must be comma-separated 'key base64value' pairs with unique keys",
                          reason="tus_bad_metadata")
        try:
            raw = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
        except (binascii.Error, ValueError):
            raise Problem(400, f"Upload-Metadata value of {key!r} is not base64", reason="tus_bad_metadata") from None
        found[key] = raw.decode("utf-8", errors="replace")
    return found


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


@dataclass
class Concat:
    """``Upload-Concat``: ``partial``, or ``final;<url> <url> ...`` naming partial uploads by their URLs.

    A final names at most ``max_parts`` partials (``MAX_FILES_PER_REQUEST``), each once: every name costs a
    lookup, a lock and a read, and a partial named twice would write its bytes twice.
    """

    kind: str
    parts: list[str]

    @classmethod
    def parse(cls, value: str | None, max_parts: int) -> Concat | None:
        if value is None:
            return None
        value = value.strip()
        if value == "partial":
            return cls("partial", [])
        if not value.startswith("final;"):
            raise Problem(400, "Upload-Concat must be 'partial' or 'final;<url> <url>...'", reason="tus_bad_concat")
        if len(value) > len("final;") + max_parts * (MAX_PART_URL + 1):
            raise _too_many_parts(max_parts)
        urls = value[len("final;"):].split()
        if len(urls) > max_parts:
            raise _too_many_parts(max_parts)
        parts = [urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] for url in urls]
        if not parts or not all(UPLOAD_ID.fullmatch(part) for part in parts):
            raise Problem(400, "Upload-Concat: final needs the URLs of partial uploads", reason="tus_bad_concat")
        if len(set(parts)) != len(parts):
            raise Problem(400, "Upload-Concat names a partial upload more than once: each may be used once",
                          reason="tus_bad_concat")
        return cls("final", parts)


def _too_many_parts(max_parts: int) -> Problem:
    return Problem(413, f"a final upload may join at most {max_parts} partial uploads; nothing was stored",
                   reason="tus_too_many_parts", max_parts=max_parts)


class ChunkChecksum:
    """``Upload-Checksum: <algorithm> <base64 digest>`` of one PATCH body, checked after its last byte."""

    def __init__(self, value: str) -> None:
        algorithm, _, digest = value.strip().partition(" ")
        if algorithm not in CHECKSUMS:
            raise Problem(400, f"unsupported checksum algorithm {algorithm!r}; use one of {', '.join(CHECKSUMS)}",
                          reason="tus_bad_checksum")
        self.hasher = CHECKSUMS[algorithm]()
        try:
            self.expected = base64.b64decode(digest.strip(), validate=True)
        except (binascii.Error, ValueError):
            self.expected = b""
        if len(self.expected) != self.hasher.digest_size:
            raise Problem(400, "Upload-Checksum digest is not valid base64 of the right length",
                          reason="tus_bad_checksum")

    @classmethod
    def from_headers(cls, headers: Any) -> ChunkChecksum | None:
        value = headers.get("Upload-Checksum")
        return cls(value) if value is not None else None

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.hasher.update(chunk)
            yield chunk

    def verify(self) -> None:
        if self.hasher.digest() != self.expected:
            raise Problem(460, "the chunk does not match its Upload-Checksum; it was discarded",
                          title="Checksum Mismatch", reason="tus_checksum_mismatch")


def http_date(moment: datetime) -> str:
    """RFC 9110 date, as ``Upload-Expires`` wants."""
    return format_datetime(moment, usegmt=True)
