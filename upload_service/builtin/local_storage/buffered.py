"""``BufferedFileWriter``: the network's chunks written to an open file in batches, off the event loop, hashed.

Shared by new objects (``object_writer``) and appends to uploads in progress (``resumable``).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from .disk_lane import DiskLane
from .durable import storage_error
from .writeback import start_writeback

WRITE_BUFFER = 1024 * 1024
WRITE_WINDOW = 2 * 1024 * 1024  # bytes queued for the disk before the event loop waits for it
WRITEBACK_STEP = 8 * 1024 * 1024  # written bytes after which the disk is asked to start on them
MAX_IOVECS = 64  # chunks per writev; more are joined first (IOV_MAX is 1024 on Linux)


def _update_all(hashers: list[Any], chunks: list[bytes]) -> None:
    for chunk in chunks:
        for hasher in hashers:
            hasher.update(chunk)


class BufferedFileWriter:
    """Writes chunks to an open file behind the network, hashing what it writes.

    Chunks are gathered into ~1 MiB batches, each written (one ``writev``, no joined copy) and hashed by the
    file's ``DiskLane`` in a thread of ``pool``. The event loop goes on receiving while up to ``WRITE_WINDOW``
    bytes wait in the lane and waits for the oldest batch only past that, so memory per upload stays bounded
    whatever the disk's speed. ``written`` counts only bytes the disk took.

    With ``hash_beside`` a second lane hashes each batch while the first writes it: sha256 and the page-cache
    write each take about half a second per GiB here, and one thread doing both was the slowest stage of a
    large upload. After a failed write the hash may then cover more or fewer bytes than the disk took, so
    the caller must discard it (and the file, or rehash what it keeps). Without it the hashers see exactly the
    bytes the disk took, short writes included.
    """

    def __init__(self, fd: int, hashers: list[Any], pool: Executor,
                 sink: Callable[[list[bytes]], None] | None = None, *, hash_beside: bool = False) -> None:
        self.fd = fd
        self.hashers = hashers
        self.sink = sink or self.write_sync  # what runs in the worker thread (a subclass may wrap it)
        self.written = 0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._lane = DiskLane(pool)
        self._hash_lane = DiskLane(pool) if hash_beside else None
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
                raise storage_error(error) from error
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

    def _queue_buffer(self) -> None:
        if self._buffer:
            size = self._buffered
            self._queued.append((self._submit(self._take()), size))
            self._queued_bytes += size

    async def _flush(self) -> None:
        self._queue_buffer()
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

    async def finish(self, then: Callable[[], None] | None = None) -> None:
        """Write out everything buffered. ``then`` (syncing and closing the file) runs in the disk lane right
        after the last write, queued with it, so it rarely costs a thread trip of its own."""
        self._queue_buffer()
        if then is not None:
            self._queued.append(([self._lane.submit(then)], 0))
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
