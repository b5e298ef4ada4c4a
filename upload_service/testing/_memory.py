"""``MemoryStorage``: the storage protocols in one process's memory, for tests and as an example backend.

It imports only the public API, as a plugin's backend would, and passes ``StorageContract`` and
``ResumableStorageContract``. Nothing survives the process and nothing is shared between processes, so it
suits one worker only. Every change happens under one lock with no ``await`` inside, which makes each one
atomic, across event loops and threads too (a test may look into it from its own loop).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from upload_service import hookimpl
from upload_service.storage import (
    ObjectExists,
    ObjectNotFound,
    OffsetMismatch,
    ResumableUpload,
    StoredObject,
    WriterBase,
    check_key,
    check_prefix,
)

READ_CHUNK = 64 * 1024


def _copy(data: dict[str, Any]) -> dict[str, Any]:
    """A JSON round trip: the caller's dict is not kept, and what could not be stored as JSON fails here too."""
    copied: dict[str, Any] = json.loads(json.dumps(data))
    return copied


class MemoryStorage:
    """``Storage`` in a dict: ``STORAGE_BACKEND=memory`` with ``MemoryStoragePlugin``, or built directly."""

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[StoredObject, bytes]] = {}
        self.resumable = MemoryResumableUploads(self)

    def writer(self) -> MemoryObjectWriter:
        return MemoryObjectWriter(self)

    def place(self, key: str, data: bytes, sha256: str, metadata: dict[str, Any]) -> StoredObject:
        """Store a new object; ``ObjectExists`` if ``key`` is taken (what every commit comes down to)."""
        stored = StoredObject(check_key(key), len(data), sha256, datetime.now(UTC), _copy(metadata))
        with self._lock:
            if key in self._objects:
                raise ObjectExists(key)
            self._objects[key] = (stored, data)
        return stored

    async def stat(self, key: str) -> StoredObject | None:
        with self._lock:
            found = self._objects.get(check_key(key))
        return found[0] if found else None

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        with self._lock:
            found = self._objects.get(check_key(key))
        if found is None:
            raise ObjectNotFound(key)
        data = found[1]  # immutable: a delete meanwhile does not touch this read
        end = len(data) if end is None else min(end, len(data))
        for position in range(start, end, READ_CHUNK):
            yield data[position:min(position + READ_CHUNK, end)]

    async def delete(self, key: str) -> bool:
        with self._lock:
            return self._objects.pop(check_key(key), None) is not None

    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int | None = None) -> list[StoredObject]:
        check_prefix(prefix)
        with self._lock:
            keys = sorted(key for key in self._objects if key.startswith(prefix)
                          and (start_after is None or key > start_after))
            found = [self._objects[key][0] for key in keys]
        return found if limit is None else found[:limit]

    async def move(self, src: str, dst: str, metadata: dict[str, Any] | None = None) -> StoredObject:
        check_key(src)
        check_key(dst)
        with self._lock:
            if src not in self._objects:
                raise ObjectNotFound(src)
            if dst in self._objects:
                raise ObjectExists(dst)
            stored, data = self._objects.pop(src)
            moved = replace(stored, key=dst, metadata=stored.metadata if metadata is None else _copy(metadata))
            self._objects[dst] = (moved, data)
        return moved

    async def update_metadata(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        check_key(key)
        with self._lock:
            if key not in self._objects:
                raise ObjectNotFound(key)
            stored, data = self._objects[key]
            updated = replace(stored, metadata=_copy(metadata))
            self._objects[key] = (updated, data)
        return updated

    async def sweep_staging(self) -> int:
        """Nothing to sweep: a writer's bytes live in the writer and die with it."""
        return 0

    async def check_ready(self) -> None:
        return None


class MemoryObjectWriter(WriterBase):
    """Collects the chunks in a list; ``commit`` joins them into the stored object."""

    def __init__(self, storage: MemoryStorage) -> None:
        self._storage = storage
        self._chunks: list[bytes] = []
        self._hash = hashlib.sha256()
        self.size = 0
        self.committed = False

    async def write(self, chunk: bytes) -> None:
        chunk = bytes(chunk)
        self._chunks.append(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    async def finish(self) -> None:
        return None

    async def commit(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        stored = self._storage.place(key, b"".join(self._chunks), self.sha256, metadata)
        self.committed = True
        self._chunks = []
        return stored

    async def abort(self) -> None:
        self._chunks = []


@dataclass
class _Upload:
    info: dict[str, Any]
    data: bytearray
    committed: str | None = None
    size: int = 0  # the offset once committed, when ``data`` is gone

    def public(self, upload_id: str) -> ResumableUpload:
        offset = self.size if self.committed else len(self.data)
        return ResumableUpload(upload_id, offset, _copy(self.info), self.committed)


class MemoryResumableUploads:
    """``ResumableStorage`` of ``MemoryStorage``: each upload is a bytearray that appends extend."""

    def __init__(self, storage: MemoryStorage) -> None:
        self.storage = storage
        self._lock = threading.Lock()
        self._uploads: dict[str, _Upload] = {}

    def _require(self, upload_id: str) -> _Upload:
        upload = self._uploads.get(check_key(upload_id))
        if upload is None:
            raise ObjectNotFound(upload_id)
        return upload

    async def create(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        with self._lock:
            if check_key(upload_id) in self._uploads:
                raise ObjectExists(upload_id)
            upload = self._uploads[upload_id] = _Upload(_copy(info), bytearray())
            return upload.public(upload_id)

    async def get(self, upload_id: str) -> ResumableUpload | None:
        with self._lock:
            upload = self._uploads.get(check_key(upload_id))
            return upload.public(upload_id) if upload else None

    async def set_info(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        with self._lock:
            upload = self._require(upload_id)
            upload.info = _copy(info)
            return upload.public(upload_id)

    async def append(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes],
                     verify: Callable[[], None] | None = None) -> ResumableUpload:
        """Without ``verify`` each chunk counts as it arrives; with it, the whole append counts after ``verify``."""
        with self._lock:
            upload = self._require(upload_id)
            if upload.committed is not None or len(upload.data) != offset:
                raise OffsetMismatch(f"upload is at {len(upload.data)}, not {offset}")
        pending = bytearray()
        async for chunk in chunks:
            (pending if verify is not None else upload.data).extend(chunk)
        if verify is not None:
            verify()
            upload.data.extend(pending)
        with self._lock:
            return upload.public(upload_id)

    async def read(self, upload_id: str) -> AsyncIterator[bytes]:
        with self._lock:
            upload = self._require(upload_id)
            if upload.committed is not None:
                raise ObjectNotFound(upload_id)
            data = bytes(upload.data)
        for position in range(0, len(data), READ_CHUNK):
            yield data[position:position + READ_CHUNK]

    async def stage(self, upload_id: str) -> MemoryStagedUpload:
        with self._lock:
            upload = self._require(upload_id)
            if upload.committed is not None:
                raise ObjectNotFound(upload_id)
        return MemoryStagedUpload(self, upload_id, upload)

    async def delete(self, upload_id: str) -> bool:
        with self._lock:
            return self._uploads.pop(check_key(upload_id), None) is not None

    async def list(self) -> list[ResumableUpload]:
        with self._lock:
            return [self._uploads[upload_id].public(upload_id) for upload_id in sorted(self._uploads)]


class MemoryStagedUpload(WriterBase):
    """A finished upload as a staged object: ``commit`` stores its bytes under a key and marks it committed."""

    def __init__(self, uploads: MemoryResumableUploads, upload_id: str, upload: _Upload) -> None:
        self._uploads = uploads
        self._id = upload_id
        self._upload = upload
        self.size = len(upload.data)

    async def write(self, chunk: bytes) -> None:
        raise TypeError("a finished resumable upload takes no more bytes")

    async def finish(self) -> None:
        self._hash = hashlib.sha256(self._upload.data[:self.size])

    async def commit(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        await self.finish()
        stored = self._uploads.storage.place(key, bytes(self._upload.data[:self.size]), self.sha256, metadata)
        with self._uploads._lock:
            self._upload.committed, self._upload.size, self._upload.data = key, self.size, bytearray()
        return stored



class MemoryStoragePlugin:
    """Registers ``MemoryStorage`` as ``STORAGE_BACKEND=memory``, one per service:
    ``create_app(Settings(storage_backend="memory"), plugins=[MemoryStoragePlugin()])``."""

    name = "memory_storage"

    @hookimpl
    def register_storage_backends(self, register: Callable[..., None], service: Any) -> None:
        register("memory", lambda service: MemoryStorage())
