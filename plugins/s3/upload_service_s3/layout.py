"""Where things live in the bucket, under ``S3_PREFIX``.

    objects/<key>      the object's record (JSON: blob, size, sha256, created_at, metadata); it is what makes
                       an object visible, and it is written last
    blobs/<random>     the bytes of one object, written (PutObject or multipart upload) before its record
    journal/<random>   one entry per blob that an operation is changing right now: the blob's lock and the
                       note a sweep needs to finish or undo the operation if its process died
    ready/<random>     write probes of ``check_ready``

Keys of the core are ``[A-Za-z0-9_-]`` segments joined by ``/``, so ``objects/<key>`` sorts in S3's byte
order exactly as the keys do, and listing by prefix with ``StartAfter`` is the storage's ``list``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """Names of every object the backend writes, below one prefix."""

    prefix: str

    def record(self, key: str) -> str:
        return f"{self.prefix}objects/{key}"

    def key_of(self, record_name: str) -> str:
        return record_name[len(self.prefix) + len("objects/"):]

    def blob(self, blob_id: str) -> str:
        return f"{self.prefix}blobs/{blob_id}"

    @property
    def blobs(self) -> str:
        return f"{self.prefix}blobs/"

    def blob_id_of(self, blob_name: str) -> str:
        return blob_name[len(self.blobs):]

    def journal(self, blob_id: str) -> str:
        return f"{self.prefix}journal/{blob_id}"

    @property
    def journals(self) -> str:
        return f"{self.prefix}journal/"

    def probe(self) -> str:
        return f"{self.prefix}ready/{secrets.token_hex(8)}"


def new_blob_id() -> str:
    return secrets.token_hex(16)
