"""The storage interface every backend implements, and the key rules that keep keys path-safe.

Keys are built by the core from generated ids and hashes only, never from filenames, in four areas:
``files/<owner>/<id>`` (persistent files), ``temp/<owner>/<id>`` (temporary uploads), ``usage/<owner>``
(an owner's usage ledger: an object without bytes whose metadata is replaced under the service's locker) and
``idempotency/<owner>/<sha256 of a key>`` and ``...-answer`` (an ``Idempotency-Key`` request's mark and its kept
answer, without bytes).
Each area has keys of one depth, so no key is ever a folder of another and a backend need not handle that.
Every method refuses a key that ``check_key`` refuses (a prefix: ``check_prefix``) with ``ValueError``.

A backend stores bytes plus a small JSON metadata dict per key and must make every change atomic: an
object is visible whole or not at all. ``upload_service.testing.StorageContract`` and
``ResumableStorageContract`` check every rule written here.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, Protocol, Self, TypeVar, runtime_checkable

from .aio import complete
from .errors import ObjectExists, ObjectNotFound, StorageBusy, StorageError, StorageFull

__all__ = [
    "Appending", "ObjectExists", "ObjectNotFound", "ObjectWriter", "OffsetMismatch", "RecordFlush", "ResumableBase",
    "ResumableStorage", "ResumableUpload", "RunningHashes", "StagedUpload", "Storage", "StorageBusy", "StorageError",
    "StorageFull",
    "StoredObject", "WriterBase", "check_key", "check_prefix", "record_writer",
]

_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,128}")
R = TypeVar("R")
MAX_RUNNING_HASHES = 4096  # per process: a few hundred bytes each


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
    """What a backend knows of one committed object. ``created_at`` is timezone-aware (UTC); ``metadata`` is
    JSON and the backend's own copy (changing the caller's dict afterwards changes nothing stored)."""

    key: str
    size: int
    sha256: str
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ObjectWriter(Protocol):
    """A write in progress: bytes go to a hidden staging area until ``commit``.

    Use it as ``async with storage.writer() as w``; leaving the block without ``commit`` (an error, a
    cancelled request) discards everything written, and ``abort`` may be called any number of times.
    ``size`` counts the bytes written so far; ``size`` and ``sha256`` are final after ``finish``. Several
    writers may be open at once (a batch upload stages every file before it commits any).
    """

    size: int

    async def write(self, chunk: bytes) -> None: ...
    async def finish(self) -> None:
        """Write out anything buffered: after it, ``size`` and ``sha256`` are final."""
    async def commit(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        """Finish if not finished yet, then make the object visible under ``key`` atomically. Never replaces an
        object: ``ObjectExists`` if ``key`` is taken (the standing object stays as it was, and this writer's
        bytes are discarded when its block is left); of two writers racing to one key exactly one wins. A
        writer that wrote nothing commits an object of 0 bytes (the usage ledger)."""
    async def abort(self) -> None: ...
    @property
    def sha256(self) -> str: ...
    async def __aenter__(self) -> ObjectWriter: ...
    async def __aexit__(self, *exc_info: Any) -> None: ...


RecordFlush = Literal["ordered", "lazy"]


def record_writer(storage: Storage, flush: RecordFlush) -> ObjectWriter:
    """A writer for a small record that need not be flushed on its own before its commit returns.

    ``ordered``: the record must be durable before any change the storage makes durable after it is (an
    ``Idempotency-Key``'s mark, written before the work it guards). ``lazy``: a crash may lose it (the kept
    answer: its retry finds the mark and takes over). A backend whose flush is the costly part of a small write
    offers ``record_writer(flush)`` (local disk: no flush of its own where the file system journals changes in
    order, so the next change's flush covers the record); any other backend's ``writer()`` is used, durable at
    once, which is always enough.
    """
    special = getattr(storage, "record_writer", None)
    return special(flush) if special is not None else storage.writer()


@runtime_checkable
class Storage(Protocol):
    """A storage backend. All methods are async and safe to call from several workers at once.

    Errors: ``ObjectNotFound`` for a missing key where a method cannot do its work without the object
    (``read``, ``move``'s source, ``update_metadata``); ``stat`` says None and ``delete`` False instead.
    ``ObjectExists`` when a commit or ``move`` finds its destination taken; ``StorageFull`` when there is no
    room (the client gets 507); ``ValueError`` for an invalid key.
    """

    name: str

    def writer(self) -> ObjectWriter:
        """Start an atomic write (see ``ObjectWriter``)."""

    async def stat(self, key: str) -> StoredObject | None:
        """The committed object under ``key``, or None."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``start`` up to ``end`` (exclusive; None = to the end) of a committed object, as ``bytes``.

        An ``end`` past the object's size reads to its end; ``start >= end`` or a ``start`` past the end reads
        nothing. A missing object raises ``ObjectNotFound`` at the latest when the first chunk is asked for (an
        async generator raises it there), and the core asks for that chunk before it answers, so a file
        deleted meanwhile is a 404. Once the first chunk is out the read finishes intact, whatever happens to
        the object meanwhile (deleted, moved).
        """

    async def delete(self, key: str) -> bool:
        """Remove an object atomically; True if it was there. Readers that already started finish intact.
        Of two racing deletes of one object exactly one says True (the core takes the file out of its owner's
        quota when it does)."""

    async def list(self, prefix: str, *, start_after: str | None = None,
                   limit: int | None = None) -> list[StoredObject]:
        """Objects whose key starts with ``prefix``, at any depth below it, in ascending order of the whole key as
        strings compare (``temp/a-b/x`` before ``temp/a/x``), strictly after ``start_after`` (which need not
        exist), at most ``limit`` of them. ``prefix`` is a folder: ``files/ab/`` does not list ``files/abc/x``."""

    async def move(self, src: str, dst: str, metadata: dict[str, Any] | None = None) -> StoredObject:
        """Atomically rename ``src`` to ``dst``, keeping size, sha256 and ``created_at``, and replace the metadata
        unless it is None. ``ObjectNotFound`` if ``src`` is missing, ``ObjectExists`` if ``dst`` is taken (both
        objects stay as they were). Of two racing moves exactly one wins: of two moves of one object the other
        gets ``ObjectNotFound`` (or ``ObjectExists``); of two moves onto one key the other gets ``ObjectExists``
        and its object stays where it was."""

    async def update_metadata(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        """Atomically replace (not merge) the metadata of an object; ``ObjectNotFound`` if it is missing."""

    async def sweep_staging(self) -> int:
        """Remove staging leftovers of writers that died (kill -9, power loss); return how many. A writer still
        at work, in this process or another, and every committed object are left alone."""

    async def check_ready(self) -> None:
        """Raise if the storage cannot be written to right now (for ``/readyz`` and start-up)."""

    # Optional methods: the core uses them when a backend has them.
    #
    # async def open(self) -> None / async def close(self) -> None
    #     Called when the service starts and stops serving (make and close a client, a connection pool).
    #
    # async def download_url(self, key: str, filename: str, content_type: str) -> str | None
    #     A short-lived URL where the client can fetch the object's bytes directly (a presigned S3 URL),
    #     served with the type and disposition ``upload_service.download_presentation(filename, content_type,
    #     read_head)`` gives (``content_type`` is the stored type, never to be served as it is). When it returns a URL,
    #     ``GET /api/files/<id>/content`` answers 302 to it instead of streaming; None streams as usual.
    #
    # async def list_expired(self, prefix: str, before: datetime, *, start_after: str | None = None,
    #                        limit: int | None = None) -> list[StoredObject]
    #     As ``list``, only the objects whose metadata's ``expires_at`` (ISO 8601) is at or before ``before``: a
    #     backend that indexes expiry answers the cleanup sweep without reading every temporary upload.
    #
    # async def totals(self, prefix: str) -> tuple[int, int]
    #     How many objects are under ``prefix`` and their bytes (recounting an owner's usage), without listing them.
    #
    # async def reindex(self) -> int
    #     Rebuild whatever index the backend keeps beside its objects from the objects themselves; return how many
    #     objects it holds (``upload-service reindex``).


# -- uploads in progress (tus) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumableUpload:
    """An upload in progress: how many bytes are safely stored (``offset``) and what the protocol keeps.

    ``info`` is opaque JSON to the backend (the tus layer keeps owner, length, metadata, expiry in it).
    ``committed`` is the key of the object it became, once ``stage().commit`` succeeded; ``offset`` is then
    that object's size.
    """

    id: str
    offset: int
    info: dict[str, Any]
    committed: str | None = None


@runtime_checkable
class ResumableStorage(Protocol):
    """Uploads in progress, appended to in chunks by any worker, then turned into one committed object.

    Found as ``storage.resumable`` (None or missing: the backend cannot resume, and tus is not offered).
    Callers serialise access to one upload id with a locker; the backend need not lock.

    Upload ids are keys (``check_key``; tus makes one segment): an invalid one is a ``ValueError``. For an
    unknown id ``get`` says None and ``delete`` False; ``set_info``, ``append``, ``read`` and ``stage`` raise
    ``ObjectNotFound``.

    Offsets are honest: ``offset`` never counts a byte that is not stored. An append cut short (client gone,
    cancelled, storage error) keeps every byte written before the cut and the offset says so, as tus asks
    ("store as much of the received data as possible"): when the cut comes from the chunks (the client), that
    is every byte received. With ``verify`` the chunk is all or nothing: it counts only if ``verify()``
    returns after its last byte; if it raises (or the chunk is cut short), the chunk is discarded, the offset
    stays where it was, and the error propagates.

    Once committed, an upload takes no more bytes (``append``: ``OffsetMismatch``), ``read`` and ``stage``
    raise ``ObjectNotFound``, ``set_info`` still works, and ``delete`` removes the upload but never the object
    it became.
    """

    async def create(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        """Create an empty upload; ``ObjectExists`` if the id is taken."""

    async def get(self, upload_id: str) -> ResumableUpload | None:
        """The upload, or None if there is none under that id."""

    async def set_info(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload:
        """Replace the protocol's info (deferred length, expiry, resulting file id) atomically."""

    async def append(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes],
                     verify: Callable[[], None] | None = None) -> ResumableUpload:
        """Write ``chunks`` at ``offset`` (which must equal the stored offset, else ``OffsetMismatch`` and
        nothing changes); returns the upload with its new offset."""

    def read(self, upload_id: str) -> AsyncIterator[bytes]:
        """Stream the bytes stored so far (to concatenate partial uploads, or to sniff a finished one). Only for
        an upload that takes no more bytes: a backend may seal it (S3 does), after which ``append`` raises
        ``OffsetMismatch``."""

    async def stage(self, upload_id: str) -> ObjectWriter:
        """The stored bytes as a staged object (``finish`` gives size and sha256 of the whole upload, ``commit``
        makes it an ordinary object and records ``committed``; the in-progress bytes are then gone).

        ``commit`` refuses a taken key with ``ObjectExists`` as any writer does, and the upload stays
        uncommitted. Left without ``commit`` the upload stays as it was and can be staged again (after
        ``finish`` a backend may have sealed it: no more appends)."""

    async def delete(self, upload_id: str) -> bool:
        """Remove the upload and its bytes; True if it was there."""

    async def list(self) -> list[ResumableUpload]:
        """Every upload, committed ones too until deleted (for the sweep of expired ones)."""


class OffsetMismatch(Exception):
    """An append started at an offset other than the stored one."""


# -- building a resumable backend: the protocol's rules, written once ------------------------------------


class RunningHashes:
    """This worker's sha256 states of uploads in progress, each valid at one offset.

    When the chunks of an upload arrive in order at one worker, finishing needs no second read of the bytes.
    A backend keeps the state after each append and takes it back for the next one; a state at another
    offset (another worker appended meanwhile) is useless and dropped. At most ``limit`` are kept, the oldest
    forgotten first (finishing such an upload reads it back once).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._states: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> Any | None:
        """The state of ``upload_id`` if it is valid at ``offset``; it is no longer kept either way."""
        known = self._states.pop(upload_id, None)
        return known[1] if known is not None and known[0] == offset else None

    def take_or_start(self, upload_id: str, offset: int) -> Any | None:
        """As ``take``, but a fresh state for an upload that has not started (offset 0)."""
        return self.take(upload_id, offset) or (hashlib.sha256() if offset == 0 else None)

    def keep(self, upload_id: str, offset: int, hasher: Any | None) -> None:
        if hasher is None:
            return
        self._states[upload_id] = (offset, hasher)
        while len(self._states) > self._limit:
            self._states.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        self._states.pop(upload_id, None)


class Appending(ABC):
    """One ``append`` as a backend performs it; ``ResumableBase.append`` drives it and keeps the protocol's rules.

    ``hasher`` is the upload's running sha256 at the offset the append started from (None: this process has
    not seen every byte before it). ``write`` feeds it exactly the bytes it stores, and the append sets it to
    None once it can no longer say which bytes those are (a failed write); finishing then reads the upload back.
    """

    hasher: Any | None = None

    @abstractmethod
    async def write(self, chunk: bytes) -> None:
        """Store ``chunk`` after the bytes written so far (it may wait in a buffer until ``flush``)."""

    @abstractmethod
    async def flush(self) -> None:
        """Store everything written so far, or raise."""

    @abstractmethod
    async def keep(self, *, cut: bool) -> ResumableUpload:
        """Count the stored bytes in the upload's record and return the upload at its new offset. ``cut``: the
        append failed or was cancelled midway, and what counts is what arrived intact."""

    @abstractmethod
    async def discard(self) -> None:
        """Drop every byte of this append: the upload stays at the offset it started from."""


class WriterBase:
    """What every ``ObjectWriter`` shares: ``async with`` discards a write left without ``commit``, and ``sha256``
    reads the hash state a subclass keeps in ``_hash`` (None until known). Subclasses write, finish, commit and
    abort; they set ``committed`` once a commit succeeded."""

    size: int = 0
    committed: bool = False
    _hash: Any = None

    @property
    def sha256(self) -> str:
        if self._hash is None:
            raise RuntimeError("call finish() first")
        return str(self._hash.hexdigest())

    async def abort(self) -> None:
        """Discard what was written; nothing to undo unless a subclass says otherwise."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if not self.committed:
            await self.abort()


class StagedUpload(WriterBase, ABC):
    """What ``ResumableBase.stage`` returns: a finished upload as an ``ObjectWriter`` that takes no more bytes.

    ``finish`` makes ``sha256`` final (the running hash, else the upload read back once). ``commit`` makes the
    bytes an ordinary object in an order that survives a crash at any point: the key is noted in the upload's
    record first, so that an upload whose process died after placing the object reads as committed to it
    rather than as one to finish into a second object; then the object is placed; then ``committed`` is
    recorded and the in-progress bytes go.
    """

    def __init__(self, upload: ResumableUpload, hasher: Any | None) -> None:
        self.upload = upload
        self.size = upload.offset
        self._hash = hasher

    async def seal(self) -> None:
        """Make the stored bytes one whole before they are hashed or committed (S3 completes its multipart
        upload). Nothing by default."""

    @abstractmethod
    async def rehash(self) -> Any:
        """A sha256 state of the stored bytes, read back (this process did not see them all)."""

    @abstractmethod
    async def note_committing(self, key: str) -> None:
        """Note durably in the upload's record that it is about to become ``key``."""

    @abstractmethod
    async def place(self, stored: StoredObject) -> None:
        """Make the stored bytes the object ``stored`` describes, atomically; ``ObjectExists`` if the key is taken."""

    @abstractmethod
    async def note_committed(self, key: str) -> None:
        """Record that the upload became ``key`` (its ``committed``) and let its in-progress bytes go."""

    async def finish(self) -> None:
        await self.seal()
        if self._hash is None:
            self._hash = await self.rehash()

    async def write(self, chunk: bytes) -> None:
        raise TypeError("a finished resumable upload takes no more bytes")

    async def commit(self, key: str, metadata: dict[str, Any]) -> StoredObject:
        check_key(key)
        await self.finish()
        stored = StoredObject(key, self.size, self.sha256, datetime.now(UTC), metadata)
        await self.note_committing(key)
        await self.place(stored)
        await self.note_committed(key)
        return stored

    async def abort(self) -> None:
        """Nothing to undo: until ``commit`` the upload stays as it was."""


class ResumableBase(ABC, Generic[R]):
    """``ResumableStorage`` with its rules in one place, for a backend to build on.

    A backend implements ``load``/``as_upload`` (``R`` is its own record of an upload), ``open_append``
    (returning an ``Appending``), ``staged`` (a ``StagedUpload``), ``remove``, and the protocol's ``create``,
    ``set_info``, ``read`` and ``list``; it inherits ``get``, ``append``, ``stage`` and ``delete``. The rules
    kept here: an append starts only at the stored offset of an upload not yet committed (``expect_offset``);
    with ``verify`` a chunk counts only if the check passes after its last byte, else it is discarded whole;
    without, an append cut short keeps the bytes that arrived intact; each upload's running sha256 is kept in
    this process (``RunningHashes``), so that finishing an upload appended here in order reads nothing back.
    """

    def __init__(self, running_hashes: int = MAX_RUNNING_HASHES) -> None:
        self.hashes = RunningHashes(running_hashes)

    # -- what a backend implements ------------------------------------------------------------------------

    @abstractmethod
    async def load(self, upload_id: str) -> R | None:
        """The backend's record of the upload, or None if there is none."""

    @abstractmethod
    def as_upload(self, record: R) -> ResumableUpload:
        """The record as the protocol shows it."""

    @abstractmethod
    async def open_append(self, upload_id: str, offset: int) -> Appending:
        """Start an append at ``offset``: ``ObjectNotFound`` for an unknown upload, else ``expect_offset``."""

    @abstractmethod
    def staged(self, record: R, hasher: Any | None) -> StagedUpload:
        """The upload as a staged object (``hasher``: its running hash, None if this process has none)."""

    @abstractmethod
    async def remove(self, upload_id: str) -> bool:
        """Remove the upload and its bytes; True if it was there."""

    @abstractmethod
    async def create(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload: ...

    @abstractmethod
    async def set_info(self, upload_id: str, info: dict[str, Any]) -> ResumableUpload: ...

    @abstractmethod
    def read(self, upload_id: str) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def list(self) -> list[ResumableUpload]: ...

    # -- the rules ------------------------------------------------------------------------------------------

    @staticmethod
    def expect_offset(upload: ResumableUpload, offset: int, *, sealed: bool = False) -> None:
        """An append goes at the stored offset of an upload still open: not committed, and not ``sealed`` (a
        backend that closes the bytes to appends when finishing, as S3 completes its multipart upload)."""
        if upload.offset != offset or upload.committed is not None or sealed:
            raise OffsetMismatch(f"upload is at {upload.offset}, not {offset}")

    async def get(self, upload_id: str) -> ResumableUpload | None:
        record = await self.load(upload_id)
        return None if record is None else self.as_upload(record)

    async def require(self, upload_id: str) -> R:
        """The record, or ``ObjectNotFound``."""
        record = await self.load(upload_id)
        if record is None:
            raise ObjectNotFound(upload_id)
        return record

    async def uncommitted(self, upload_id: str) -> R:
        """The record of an upload whose bytes are still its own (``read``, ``stage``), else ``ObjectNotFound``."""
        record = await self.require(upload_id)
        if self.as_upload(record).committed is not None:
            raise ObjectNotFound(upload_id)
        return record

    async def append(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes],
                     verify: Callable[[], None] | None = None) -> ResumableUpload:
        appending = await self.open_append(upload_id, offset)
        hasher = self.hashes.take_or_start(upload_id, offset)
        before = hasher.copy() if hasher is not None and verify is not None else None
        appending.hasher = hasher
        try:
            async for chunk in chunks:
                await appending.write(chunk)
            await appending.flush()
            if verify is not None:
                verify()
        except BaseException:
            undo = self._after_failure(appending, upload_id, offset, before, all_or_nothing=verify is not None)
            await complete(undo)
            raise
        return await complete(self._keep(appending, cut=False))

    async def _after_failure(self, appending: Appending, upload_id: str, offset: int, before: Any | None, *,
                             all_or_nothing: bool) -> None:
        if all_or_nothing:  # a chunk that failed its check never counts
            await appending.discard()
            self.hashes.keep(upload_id, offset, before)
        else:  # keep what arrived, as tus asks
            await self._keep(appending, cut=True)

    async def _keep(self, appending: Appending, *, cut: bool) -> ResumableUpload:
        upload = await appending.keep(cut=cut)
        self.hashes.keep(upload.id, upload.offset, appending.hasher)
        return upload

    async def stage(self, upload_id: str) -> StagedUpload:
        record = await self.uncommitted(upload_id)
        return self.staged(record, self.hashes.take(upload_id, self.as_upload(record).offset))

    async def delete(self, upload_id: str) -> bool:
        self.hashes.forget(upload_id)
        return await self.remove(upload_id)
