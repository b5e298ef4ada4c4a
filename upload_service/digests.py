"""Client-declared digests of a body (``Content-Digest``, ``Digest``, ``Content-MD5``), checked after streaming."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from .errors import Problem

_CONTENT_DIGEST = re.compile(r"sha-256\s*=\s*:([A-Za-z0-9+/=]+):", re.IGNORECASE)
_LEGACY_DIGEST = re.compile(r"sha-256\s*=\s*([A-Za-z0-9+/=]+)", re.IGNORECASE)


def _b64_to_hex(value: str, length: int) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != length:
        raise Problem(400, "the digest header is malformed", reason="bad_digest")
    return raw.hex()


@dataclass
class ExpectedDigests:
    """What the client said its body hashes to; md5 is computed only when a client asked for it."""

    sha256: str | None = None
    md5: str | None = None

    @classmethod
    def from_headers(cls, headers: object) -> ExpectedDigests:
        get = headers.get  # type: ignore[attr-defined]
        expected = cls()
        if (match := _CONTENT_DIGEST.search(get("Content-Digest", ""))) or (
                match := _LEGACY_DIGEST.search(get("Digest", ""))):
            expected.sha256 = _b64_to_hex(match.group(1), 32)
        if md5 := get("Content-MD5"):
            expected.md5 = _b64_to_hex(md5.strip(), 16)
        return expected

    def md5_hasher(self) -> hashlib._Hash | None:
        return hashlib.md5(usedforsecurity=False) if self.md5 else None

    def verify(self, sha256: str, md5: hashlib._Hash | None) -> None:
        if self.sha256 and self.sha256 != sha256:
            raise Problem(400, "the body does not match its sha-256 digest; nothing was stored",
                          reason="digest_mismatch")
        if self.md5 and md5 is not None and self.md5 != md5.hexdigest():
            raise Problem(400, "the body does not match its Content-MD5; nothing was stored", reason="digest_mismatch")
