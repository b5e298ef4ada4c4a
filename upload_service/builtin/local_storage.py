"""Local-disk storage backend (``STORAGE_BACKEND=local``), safe with several workers on one ``UPLOAD_DIR``.

Layout under ``UPLOAD_DIR``::

    objects/<key>/data        the bytes
    objects/<key>/meta.json   size, sha256, created_at and the core's metadata
    .staging/<random>/        writes in progress; the writer holds an flock on its ``data`` file
    .trash/<random>/          deleted objects on their way out
    .resumable/<id>/          tus uploads in progress (see ``local_resumable``)

An object is one directory, so every change is one atomic ``rename``: a commit renames a fully written,
fsynced staging directory into place; a delete renames it into ``.trash`` first; a move renames it across.
A writer killed mid-upload leaves only an unlocked staging directory, which ``sweep_staging`` removes.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiofiles
import msgspec

from upload_service import complete, hookimpl, random_hex
from upload_service.storage import (
    ObjectExists, ObjectNotFound, StorageError, StorageFull, StoredObject, check_key, check_prefix,
)

from .disk_lane import DiskLane
from .writeback import start_writeback

WRITE_BUFFER = 1024 * 1024
WRITE_WINDOW = 2 * 1024 * 1024  # bytes queued for the disk before the event loop waits for it
WRITEBACK_STEP = 8 * 1024 * 1024  # written bytes after which the disk is asked to start on them
MAX_IOVECS = 64  # chunks per writev; more are joined first (IOV_MAX is 1024 on Linux)
READ_CHUNK = 256 * 1024
STAGING_GRACE_SECONDS = 2.0  # covers the instant between creating a staging folder and locking it
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


# Disk work runs here rather than in asyncio's default pool (cores + 4 threads): many small uploads at once each
# wait on fsync, and with a handful of threads they would queue behind each other.
_IO_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="local-storage")


def in_io_pool(function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """Run blocking disk work in the storage's thread pool."""
    return asyncio.get_running_loop().run_in_executor(_IO_POOL, function, *args)


def _storage_error(error: OSError) -> StorageError:
    if error.errno in _FULL:
        return StorageFull("no space left in UPLOAD_DIR")
    return StorageError(str(error))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename_into(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, making target's folder only when the rename finds none (an owner's
    first file): trying mkdir before every rename cost two system calls per upload."""
    try:
        os.rename(source, target)
    except FileNotFoundError:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)


def _write_json(path: Path, data: dict[str, Any], *, fresh: bool = False) -> None:
    """Write ``data`` durably to ``path``, replacing it atomically. ``fresh``: the file is new, in a folder no
    reader sees yet (staging), so it is written in place, one open and no rename."""
    target = path if fresh else path.with_name(f".{path.name}.{random_hex(6)}.tmp")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(msgspec.json.encode(data))
        while view:
            view = view[os.write(fd, view):]
        os.fdatasync(fd)
    finally:
        os.close(fd)
    if not fresh:
        os.replace(target, path)


def _update_all(hashers: list[Any], chunks: list[bytes]) -> None:
    for chunk in chunks:
        for hasher in hashers:
            hasher.update(chunk)


class BufferedFileWriter:
    """Writes chunks to an open file behind the network, hashing what it writes.

    Chunks are gathered into ~1 MiB batches, each written (one ``writev``, no joined copy) and hashed by the
    file's ``DiskLane`` in a pool thread. The event loop goes on receiving while up to ``WRITE_WINDOW`` bytes wait
    in the lane and waits for the oldest batch only past that, so memory per upload stays bounded whatever the
    disk's speed. ``written`` counts only bytes the disk took.

    With ``hash_beside`` a second lane hashes each batch while the first writes it: sha256 and the page-cache
    write each take about half a second per GiB here, and one thread doing both was the slowest stage of a
    large upload. After a failed write the hash may then cover more or fewer bytes than the disk took, so
    the caller must discard it (and the file, or rehash what it keeps). Without it the hashers see exactly the
    bytes the disk took, short writes included.
    """

    def __init__(self, fd: int, hashers: list[Any], sink: Callable[[list[bytes]], None] | None = None, *,
                 hash_beside: bool = False) -> None:
        self.fd = fd
        self.hashers = hashers
        self.sink = sink or self.write_sync  # what runs in the worker thread (a subclass may wrap it)
        self.written = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._lane = DiskLane(_IO_POOL)
        self._hash_lane = DiskLane(_IO_POOL) if hash_beside else None
        self._queued: deque[tuple[list[asyncio.Future[None]], int]] = deque()
        self._queued_bytes = 0
        self._position: int | None = None  # the file offset of the next write, read at the first one
        self._unsynced_from = 0  # where the bytes not yet handed to the disk's writeback start
        self._lane_used = False
        self._rest_hashed = False  # ``hash_rest`` ran: the buffered rest is in the hash already

    def write_sync(self, chunks: list[bytes]) -> None:
        if len(chunks) > MAX_IOVECS:  # many tiny pieces (a trickling client): one copy is cheaper than the calls
            chunks = [b"".join(chunks)]
        if self._position is None:
            self._position = self._unsynced_from = os.lseek(self.fd, 0, os.SEEK_CUR)
        hashers = self.hashers if self._hash_lane is None and not self._rest_hashed else ()
        views = [memoryview(chunk) for chunk in chunks if chunk]
        while views:
            try:
                count = os.writev(self.fd, views)
            except OSError as error:
                raise _storage_error(error) from error
            self.written += count
            self._position += count
            while count:  # hash what the disk took; keep the rest of a short write for the next call
                view = views[0]
                taken = view[:count]
                for hasher in hashers:
                    hasher.update(taken)
                count -= len(taken)
                if len(taken) == len(view):
                    views.pop(0)
                else:
                    views[0] = view[len(taken):]
        if self._position - self._unsynced_from >= WRITEBACK_STEP:
            start_writeback(self.fd, self._unsynced_from, self._position - self._unsynced_from)
            self._unsynced_from = self._position

    def hash_sync(self, chunks: list[bytes]) -> None:
        """The hashing half of a batch when it runs beside the write (``write_sync`` hashes otherwise)."""
        if self._hash_lane is not None:
            _update_all(self.hashers, chunks)

    def store_sync(self, chunks: list[bytes]) -> None:
        """Write and hash a batch in the calling thread (the last one, at commit)."""
        self.sink(chunks)
        if not self._rest_hashed:
            self.hash_sync(chunks)

    @property
    def untouched(self) -> bool:
        """Nothing handed to the disk yet: every byte so far is in the buffer."""
        return not self._lane_used

    def hash_rest(self) -> None:
        """Hash the buffered bytes here, leaving them for ``take_rest``: the hash is final without a trip to a
        thread, and the caller's own trip writes them. No ``write`` may follow."""
        _update_all(self.hashers, self._buffer)
        self._rest_hashed = True

    def _submit(self, chunks: list[bytes]) -> list[asyncio.Future[None]]:
        self._lane_used = True
        futures = [self._lane.submit(self.sink, chunks)]
        if self._hash_lane is not None:
            futures.append(self._hash_lane.submit(self.hash_sync, chunks))
        return futures

    def _take(self) -> list[bytes]:
        taken, self._buffer, self._buffered = self._buffer, [], 0
        return taken

    async def _flush(self) -> None:
        if self._buffer:
            size = self._buffered
            self._queued.append((self._submit(self._take()), size))
            self._queued_bytes += size
        while self._queued_bytes > WRITE_WINDOW:
            await self._wait_oldest()

    async def _wait_oldest(self) -> None:
        futures, size = self._queued[0]
        for future in futures:
            await future
        self._queued.popleft()
        self._queued_bytes -= size

    async def write(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._buffer.append(bytes(chunk))  # a copy only if the caller passed a mutable buffer
        self._buffered += len(chunk)
        if self._buffered >= WRITE_BUFFER:
            await self._flush()

    async def finish(self) -> None:
        """Write out everything buffered."""
        await self._flush()
        while self._queued:
            await self._wait_oldest()

    async def take_rest(self) -> list[bytes]:
        """Wait for the queued writes and hand over the buffered rest, for the caller's own thread trip."""
        while self._queued:
            await self._wait_oldest()
        return self._take()

    async def settle(self, *, keep: bool = False) -> None:
        """After an error or cancellation: let the queued writes run out, then write (``keep``) or drop the
        buffered rest. Shielded, so a cancelled request still leaves the file in a known state."""
        rest = self._take()
        if not keep:
            rest = []
        futures = [future for batch, _ in self._queued for future in batch]
        self._queued.clear()
        self._queued_bytes = 0

        async def drain() -> None:
            if rest:
                futures.extend(self._submit(rest))  # the write fails at once after a failed write
            await self._lane.idle()
            if self._hash_lane is not None:
                await self._hash_lane.idle()
            for future in futures:  # their errors were (or will be) reported by whoever failed first
                if not future.cancelled():
                    future.exception()

        await asyncio.shield(drain())


class LocalObjectWriter:
    """Streams into ``.staging/<random>/data`` with sha256 computed on the way (see ``BufferedFileWriter``).

    The staging file is created by the first batch's thread trip, not up front: a small upload (one buffer)
    then costs a single trip, at commit, instead of two.
    """

    def __init__(self, storage: LocalStorage) -> None:
        self._storage = storage
        self._dir = storage.staging / random_hex(16)
        self._fd: int | None = None
        self._hash = hashlib.sha256()
        self._out = BufferedFileWriter(-1, [self._hash], self._write_sync, hash_beside=True)
        self.size = 0
        self.committed = False

    async def __aenter__(self) -> LocalObjectWriter:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if not self.committed:
            await self.abort()

    def _open(self) -> None:
        if self._fd is not None:
            return
        try:
            self._dir.mkdir(parents=True)
            self._fd = os.open(self._dir / "data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as error:
            raise _storage_error(error) from error
        self._out.fd = self._fd

    def _write_sync(self, chunks: list[bytes]) -> None:
        """Runs in a worker thread for each batch (a test plugin slows it down to mimic a busy disk)."""
        self._open()
        self._out.write_sync(chunks)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        await self._out.write(chunk)

    async def finish(self) -> None:
        """Make size and sha256 final. A file still wholly in the buffer (a small upload) is hashed here and
        written by commit's single trip, rather than costing a trip of its own now."""
        if self._out.untouched:  # then under WRITE_BUFFER, or it would have been flushed
            self._out.hash_rest()
            return
        await self._out.finish()

    async def commit(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        check_key(key)
        rest = await self._out.take_rest()
        created = datetime.now(UTC)
        # Waited out even if the request is cancelled meanwhile: the thread closes the file descriptor, and an
        # abort running beside it would close that number a second time (by then maybe another connection's).
        await complete(in_io_pool(self._commit_sync, key, rest, created, metadata))
        self.committed = True
        return StoredObject(key=key, size=self.size, sha256=self.sha256, created_at=created, metadata=metadata)

    def _commit_sync(self, key: str, rest: list[bytes], created: datetime, metadata: dict[str, Any]) -> None:
        """Last buffer, fdatasync, metadata, rename into place: one trip to a worker thread for a small file."""
        try:
            self._open()
            if rest:
                self._out.store_sync(rest)
            record = {"size": self.size, "sha256": self.sha256, "created_at": created.isoformat(), "metadata": metadata}
            os.fdatasync(self._fd)  # type: ignore[arg-type]
            _write_json(self._dir / "meta.json", record, fresh=True)
            self._storage.place(self._dir, key)
        finally:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def abort(self) -> None:
        """Drop everything written; safe to call twice, and shielded so a cancelled request still cleans up."""

        async def discard() -> None:
            await self._out.settle()
            await in_io_pool(self._discard_sync)

        await asyncio.shield(discard())

    def _discard_sync(self) -> None:
        self._close()
        shutil.rmtree(self._dir, ignore_errors=True)


class LocalStorage:
    """Objects as directories under ``root/objects``; see the module docstring for the layout."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.objects = self.root / "objects"
        self.staging = self.root / ".staging"
        self.trash = self.root / ".trash"
        for folder in (self.objects, self.staging, self.trash):
            folder.mkdir(parents=True, exist_ok=True)
        from .local_resumable import LocalResumableUploads  # imports this module's helpers, so not at the top

        self.resumable = LocalResumableUploads(self)

    def object_dir(self, key: str) -> Path:
        return self.objects.joinpath(*check_key(key).split("/"))

    def place(self, folder: Path, key: str) -> None:
        """Rename a complete staging folder (``data`` + ``meta.json``) into place as ``key``: the atomic commit."""
        target = self.object_dir(key)
        try:
            _rename_into(folder, target)
            _fsync_dir(target.parent)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise ObjectExists(key) from error
            raise _storage_error(error) from error

    def writer(self) -> LocalObjectWriter:
        return LocalObjectWriter(self)

    def _load(self, key: str) -> StoredObject | None:
        try:
            with open(self.object_dir(key) / "meta.json", encoding="utf-8") as handle:
                record = json.load(handle)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return StoredObject(
            key=key,
            size=record["size"],
            sha256=record["sha256"],
            created_at=datetime.fromisoformat(record["created_at"]),
            metadata=record.get("metadata", {}),
        )

    async def stat(self, key: str) -> StoredObject | None:
        return await in_io_pool(self._load, key)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        try:
            handle = await aiofiles.open(self.object_dir(key) / "data", "rb")
        except (FileNotFoundError, NotADirectoryError) as error:
            raise ObjectNotFound(key) from error
        try:
            await handle.seek(start)
            remaining = None if end is None else max(0, end - start)
            while remaining is None or remaining > 0:
                chunk = await handle.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await handle.close()

    def _delete_sync(self, key: str) -> bool:
        doomed = self.trash / secrets.token_hex(16)
        try:
            os.rename(self.object_dir(key), doomed)
        except (FileNotFoundError, NotADirectoryError):
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    async def delete(self, key: str) -> bool:
        return await in_io_pool(self._delete_sync, key)

    def _list_sync(self, prefix: str, start_after: str | None, limit: int | None) -> list[StoredObject]:
        base = self.objects.joinpath(*check_prefix(prefix)[:-1].split("/"))
        keys = sorted(self._keys_under(base, prefix[:-1]))
        if start_after is not None:
            keys = [key for key in keys if key > start_after]
        found = []
        for key in keys:
            if limit is not None and len(found) >= limit:
                break
            stored = self._load(key)
            if stored is not None:
                found.append(stored)
        return found

    def _keys_under(self, folder: Path, key: str) -> list[str]:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        keys = []
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            child = f"{key}/{entry.name}"
            if os.path.exists(os.path.join(entry.path, "meta.json")):
                keys.append(child)
            else:
                keys.extend(self._keys_under(Path(entry.path), child))
        return keys

    async def list(self, prefix: str, *, start_after: str | None = None, limit: int | None = None) -> list[StoredObject]:
        return await in_io_pool(self._list_sync, prefix, start_after, limit)

    def _move_sync(self, src: str, dst: str) -> None:
        target = self.object_dir(dst)
        try:
            _rename_into(self.object_dir(src), target)
        except (FileNotFoundError, NotADirectoryError) as error:
            raise ObjectNotFound(src) from error
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise ObjectExists(dst) from error
            raise _storage_error(error) from error
        _fsync_dir(target.parent)

    async def move(self, src: str, dst: str, metadata: dict[str, Any] | None = None) -> StoredObject:
        await in_io_pool(self._move_sync, src, dst)
        if metadata is not None:
            return await self.update_metadata(dst, metadata)
        stored = await self.stat(dst)
        if stored is None:
            raise ObjectNotFound(dst)
        return stored

    def _update_sync(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        stored = self._load(key)
        if stored is None:
            raise ObjectNotFound(key)
        record = {"size": stored.size, "sha256": stored.sha256, "created_at": stored.created_at.isoformat(),
                  "metadata": metadata}
        try:
            _write_json(self.object_dir(key) / "meta.json", record)
        except FileNotFoundError as error:
            raise ObjectNotFound(key) from error
        except OSError as error:
            raise _storage_error(error) from error
        return StoredObject(key, stored.size, stored.sha256, stored.created_at, metadata)

    async def update_metadata(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        return await in_io_pool(self._update_sync, key, metadata)

    def _sweep_sync(self) -> int:
        removed = 0
        now = time.time()
        for folder in (self.staging, self.trash):
            for entry in os.scandir(folder):
                if now - entry.stat(follow_symlinks=False).st_mtime < STAGING_GRACE_SECONDS:
                    continue
                if self._abandoned(Path(entry.path)):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
        return removed

    @staticmethod
    def _abandoned(folder: Path) -> bool:
        """True when no live writer holds the flock on the folder's ``data`` file."""
        try:
            fd = os.open(folder / "data", os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    async def sweep_staging(self) -> int:
        return await in_io_pool(self._sweep_sync)

    def _check_sync(self) -> None:
        probe = self.staging / f"ready-{secrets.token_hex(8)}"
        try:
            probe.write_bytes(b"ok")
        finally:
            probe.unlink(missing_ok=True)

    async def check_ready(self) -> None:
        await in_io_pool(self._check_sync)


@hookimpl
def register_storage_backends(register, service) -> None:
    register("local", lambda service: LocalStorage(service.settings.upload_dir))
