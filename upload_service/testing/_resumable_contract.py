"""``ResumableStorageContract``: every rule of ``upload_service.storage.ResumableStorage`` as a test.

It takes the same fixture as ``StorageContract``: ``storage``, an opened storage object whose ``resumable`` is
its ``ResumableStorage`` (committed uploads are checked through the storage itself). A backend that resumes
subclasses both: ``class TestMyStorage(StorageContract, ResumableStorageContract)``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import pytest

from upload_service.storage import (
    ObjectExists,
    ObjectNotFound,
    OffsetMismatch,
    ResumableStorage,
    ResumableUpload,
    Storage,
)

from ._contract import BackendFixtures, MiB, key, put, read, refused, sha256


def upload_id() -> str:
    return secrets.token_urlsafe(18)  # what tus makes: one key segment


async def chunks(*parts: bytes, then: BaseException | None = None) -> AsyncIterator[bytes]:
    """The body of an append: ``parts``, then ``then`` raised (a client gone mid-request)."""
    for part in parts:
        yield part
    if then is not None:
        raise then


def refuse() -> None:
    raise ValueError("checksum mismatch")


async def state(store: ResumableStorage, upload: str) -> ResumableUpload:
    """``store.get(upload)`` of an upload that must be there."""
    found = await store.get(upload)
    assert found is not None, f"upload {upload} is missing"
    return found


async def read_upload(store: ResumableStorage, upload: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(upload)])


async def commit(store: ResumableStorage, upload: str, target: str, metadata: dict[str, Any] | None = None) -> Any:
    staged = await store.stage(upload)
    await staged.finish()
    return await staged.commit(target, metadata or {})


@pytest.mark.asyncio
class ResumableStorageContract(BackendFixtures):
    """Conformance tests of ``storage.resumable`` (see the module docstring). ``large``: as in ``StorageContract``."""

    large = 3 * MiB

    @pytest.fixture
    def resumable(self, storage: Storage) -> ResumableStorage:
        """The store under test: the ``storage`` fixture's ``resumable``."""
        resumable: ResumableStorage = storage.resumable  # type: ignore[attr-defined]  # optional: not in Storage
        return resumable

    async def test_the_storage_offers_resumable_uploads(self, resumable: Any) -> None:
        assert isinstance(resumable, ResumableStorage)

    # -- records ------------------------------------------------------------------------------------

    async def test_create_starts_empty_and_refuses_a_taken_id(self, resumable: ResumableStorage) -> None:
        upload = upload_id()
        created = await resumable.create(upload, {"length": 10, "meta": {"filename": "a.txt"}})
        assert created == ResumableUpload(upload, 0, {"length": 10, "meta": {"filename": "a.txt"}}, None)
        assert await resumable.get(upload) == created
        with pytest.raises(ObjectExists):
            await resumable.create(upload, {"other": True})
        assert await resumable.get(upload) == created

    async def test_an_unknown_upload(self, resumable: ResumableStorage) -> None:
        """``get`` says None and ``delete`` False; everything else raises ``ObjectNotFound``."""
        unknown = upload_id()
        assert await resumable.get(unknown) is None
        assert await resumable.delete(unknown) is False
        with pytest.raises(ObjectNotFound):
            await resumable.set_info(unknown, {})
        with pytest.raises(ObjectNotFound):
            await resumable.append(unknown, 0, chunks(b"x"))
        with pytest.raises(ObjectNotFound):
            await read_upload(resumable, unknown)
        with pytest.raises(ObjectNotFound):
            await resumable.stage(unknown)
        assert await resumable.get(unknown) is None

    async def test_invalid_ids_are_refused_with_value_error(self, resumable: ResumableStorage) -> None:
        """An id is a valid key (``check_key``; tus makes one segment)."""
        for bad in ("", "../x", "/x", "a.b", "a b"):
            await refused(f"create({bad!r})", resumable.create, bad, {})
            await refused(f"get({bad!r})", resumable.get, bad)
            await refused(f"delete({bad!r})", resumable.delete, bad)

    async def test_set_info_replaces_the_info_and_keeps_the_offset(self, resumable: ResumableStorage) -> None:
        upload = upload_id()
        await resumable.create(upload, {"length": None, "a": 1})
        await resumable.append(upload, 0, chunks(b"abc"))
        updated = await resumable.set_info(upload, {"length": 3})
        assert updated == ResumableUpload(upload, 3, {"length": 3}, None)
        assert await resumable.get(upload) == updated

    # -- appending ----------------------------------------------------------------------------------

    async def test_appends_at_the_stored_offset(self, resumable: ResumableStorage, storage: Storage) -> None:
        upload = upload_id()
        await resumable.create(upload, {"k": 1})
        first = await resumable.append(upload, 0, chunks(b"abc", b"", b"de"))
        assert first == ResumableUpload(upload, 5, {"k": 1}, None)
        second = await resumable.append(upload, 5, chunks(b"fgh"))
        assert second.offset == 8 and await resumable.get(upload) == second
        assert (await resumable.append(upload, 8, chunks())).offset == 8  # an empty append changes nothing
        target = key()
        stored = await commit(resumable, upload, target)
        assert (stored.size, stored.sha256) == (8, sha256(b"abcdefgh"))
        assert await read(storage, target) == b"abcdefgh"

    async def test_an_append_at_another_offset_changes_nothing(self, resumable: ResumableStorage) -> None:
        upload = upload_id()
        await resumable.create(upload, {})
        await resumable.append(upload, 0, chunks(b"abc"))
        for wrong in (0, 2, 4, 100):
            with pytest.raises(OffsetMismatch):
                await resumable.append(upload, wrong, chunks(b"XYZ"))
        assert (await state(resumable, upload)).offset == 3
        assert await read_upload(resumable, upload) == b"abc"

    async def test_an_append_cut_short_keeps_what_arrived(self, resumable: ResumableStorage,
                                                          storage: Storage) -> None:
        """A client gone mid-request: every byte received before the cut counts, and the offset says so."""
        upload, data = upload_id(), os.urandom(self.large + 1000)
        cut = self.large // 2 + 7
        await resumable.create(upload, {})
        await resumable.append(upload, 0, chunks(data[:10]))
        with pytest.raises(ConnectionError):
            await resumable.append(upload, 10, chunks(data[10:cut // 2], data[cut // 2:cut], then=ConnectionError()))
        assert (await state(resumable, upload)).offset == cut
        await resumable.append(upload, cut, chunks(data[cut:]))
        target = key()
        stored = await commit(resumable, upload, target)
        assert (stored.size, stored.sha256) == (len(data), sha256(data))
        assert await read(storage, target) == data

    async def test_a_cancelled_append_keeps_what_arrived(self, resumable: ResumableStorage) -> None:
        """A request cancelled while it waits for more bytes (its client hung up)."""
        upload, arrived = upload_id(), asyncio.Event()

        async def stalled() -> AsyncIterator[bytes]:
            yield b"first "
            yield b"second"
            arrived.set()
            await asyncio.Event().wait()  # no more bytes come
            yield b"never"

        await resumable.create(upload, {})
        task = asyncio.create_task(resumable.append(upload, 0, stalled()))
        await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await state(resumable, upload)).offset == 12
        assert (await resumable.append(upload, 12, chunks(b"!"))).offset == 13
        assert await read_upload(resumable, upload) == b"first second!"

    async def test_a_chunk_whose_check_fails_is_discarded(self, resumable: ResumableStorage) -> None:
        """With ``verify`` a chunk is all or nothing: it counts only if ``verify()`` returns after its last byte."""
        upload = upload_id()
        await resumable.create(upload, {})
        await resumable.append(upload, 0, chunks(b"abc"), verify=lambda: None)
        with pytest.raises(ValueError, match="checksum"):
            await resumable.append(upload, 3, chunks(b"XY", b"Z"), verify=refuse)
        with pytest.raises(ConnectionError):  # cut short before the check: nothing counts either
            await resumable.append(upload, 3, chunks(b"XY", then=ConnectionError()), verify=lambda: None)
        assert (await state(resumable, upload)).offset == 3
        await resumable.append(upload, 3, chunks(b"def"), verify=lambda: None)
        staged = await resumable.stage(upload)
        await staged.finish()
        assert (staged.size, staged.sha256) == (6, sha256(b"abcdef"))  # the discarded bytes are in no hash

    async def test_large_appends_in_uneven_pieces(self, resumable: ResumableStorage, storage: Storage) -> None:
        upload, data = upload_id(), os.urandom(self.large + self.large // 2 + 3)
        cuts = [0, 1, self.large // 3, self.large - 1, self.large + 5, len(data)]
        await resumable.create(upload, {})
        for start, end in pairwise(cuts):
            step = max(1, (end - start) // 3)
            pieces = [data[at:min(at + step, end)] for at in range(start, end, step)]
            assert (await resumable.append(upload, start, chunks(*pieces))).offset == end
        assert await read_upload(resumable, upload) == data
        target = key()
        stored = await commit(resumable, upload, target, {"big": True})
        assert (stored.size, stored.sha256, stored.metadata) == (len(data), sha256(data), {"big": True})
        assert await read(storage, target) == data

    # -- reading, staging, committing ---------------------------------------------------------------

    async def test_read_streams_the_bytes_so_far(self, resumable: ResumableStorage) -> None:
        """For an upload that takes no more bytes (a backend may seal it: S3 does)."""
        empty, upload = upload_id(), upload_id()
        await resumable.create(empty, {})
        assert await read_upload(resumable, empty) == b""
        await resumable.create(upload, {})
        await resumable.append(upload, 0, chunks(b"partial ", b"upload"))
        assert await read_upload(resumable, upload) == b"partial upload"
        assert (await state(resumable, upload)).offset == 14

    async def test_commit_makes_an_ordinary_object(self, resumable: ResumableStorage, storage: Storage) -> None:
        upload, target = upload_id(), key()
        await resumable.create(upload, {"tus": 1})
        await resumable.append(upload, 0, chunks(b"hello ", b"world"))
        staged = await resumable.stage(upload)
        assert staged.size == 11
        await staged.finish()
        assert staged.sha256 == sha256(b"hello world")
        stored = await staged.commit(target, {"filename": "hello.txt"})
        assert (stored.key, stored.size, stored.sha256, stored.metadata) == (target, 11, sha256(b"hello world"),
                                                                             {"filename": "hello.txt"})
        assert await storage.stat(target) == stored and await read(storage, target) == b"hello world"
        after = await resumable.get(upload)
        assert after == ResumableUpload(upload, 11, {"tus": 1}, target)  # offset: the object's size
        assert upload in [listed.id for listed in await resumable.list()]
        with pytest.raises(OffsetMismatch):
            await resumable.append(upload, 11, chunks(b"more"))
        with pytest.raises(ObjectNotFound):
            await resumable.stage(upload)
        with pytest.raises(ObjectNotFound):
            await read_upload(resumable, upload)
        noted = await resumable.set_info(upload, {"tus": 1, "file_id": "f"})  # tus notes the file afterwards
        assert noted == ResumableUpload(upload, 11, {"tus": 1, "file_id": "f"}, target)
        assert await read(storage, target) == b"hello world"

    async def test_an_uncommitted_stage_leaves_the_upload(self, resumable: ResumableStorage) -> None:
        upload = upload_id()
        await resumable.create(upload, {})
        await resumable.append(upload, 0, chunks(b"staged twice"))
        async with await resumable.stage(upload) as staged:
            await staged.finish()
        assert await resumable.get(upload) == ResumableUpload(upload, 12, {}, None)
        again = await resumable.stage(upload)
        await again.finish()
        assert again.sha256 == sha256(b"staged twice")

    async def test_commit_refuses_an_existing_key(self, resumable: ResumableStorage, storage: Storage) -> None:
        upload, taken, free = upload_id(), key(), key()
        existing = await put(storage, taken, b"already here")
        await resumable.create(upload, {})
        await resumable.append(upload, 0, chunks(b"upload"))
        with pytest.raises(ObjectExists):
            await commit(resumable, upload, taken)
        assert await storage.stat(taken) == existing and await read(storage, taken) == b"already here"
        assert await resumable.get(upload) == ResumableUpload(upload, 6, {}, None)
        await commit(resumable, upload, free)
        assert await read(storage, free) == b"upload"

    async def test_an_empty_upload_commits_an_empty_object(self, resumable: ResumableStorage,
                                                           storage: Storage) -> None:
        upload, target = upload_id(), key()
        await resumable.create(upload, {})
        stored = await commit(resumable, upload, target)
        assert (stored.size, stored.sha256) == (0, sha256(b""))
        assert await read(storage, target) == b""
        assert (await state(resumable, upload)).committed == target

    async def test_appends_from_two_workers(self, resumable: ResumableStorage, storage: Storage,
                                            second_worker: Storage | None) -> None:
        """tus sends each PATCH to whichever worker: each sees the others' bytes, and the sha256 is right."""
        if second_worker is None:
            pytest.skip("no second_worker fixture: the backend serves one worker")
        other: ResumableStorage = second_worker.resumable  # type: ignore[attr-defined]
        upload, target = upload_id(), key()
        await resumable.create(upload, {"k": 1})
        with pytest.raises(ObjectExists):
            await other.create(upload, {})
        await other.append(upload, 0, chunks(b"first "))
        assert await resumable.get(upload) == ResumableUpload(upload, 6, {"k": 1}, None)
        await resumable.append(upload, 6, chunks(b"second "))
        with pytest.raises(OffsetMismatch):
            await other.append(upload, 6, chunks(b"stale"))
        await other.append(upload, 13, chunks(b"third"))
        stored = await commit(other, upload, target)  # a running hash of its own would lack "second "
        assert (stored.size, stored.sha256) == (18, sha256(b"first second third"))
        assert (await state(resumable, upload)).committed == target
        assert await read(storage, target) == b"first second third"

    # -- removing and listing -----------------------------------------------------------------------

    async def test_delete_removes_an_upload_in_progress(self, resumable: ResumableStorage) -> None:
        upload = upload_id()
        await resumable.create(upload, {})
        await resumable.append(upload, 0, chunks(os.urandom(self.large)))
        assert await resumable.delete(upload) is True
        assert await resumable.get(upload) is None
        assert upload not in [listed.id for listed in await resumable.list()]
        with pytest.raises(ObjectNotFound):
            await read_upload(resumable, upload)
        assert await resumable.delete(upload) is False

    async def test_deleting_a_committed_upload_keeps_its_object(self, resumable: ResumableStorage,
                                                                storage: Storage) -> None:
        upload, target = upload_id(), key()
        await resumable.create(upload, {})
        await resumable.append(upload, 0, chunks(b"the file's bytes"))
        stored = await commit(resumable, upload, target)
        assert await resumable.delete(upload) is True
        assert await resumable.get(upload) is None
        assert await storage.stat(target) == stored and await read(storage, target) == b"the file's bytes"

    async def test_list_has_every_upload(self, resumable: ResumableStorage) -> None:
        """In progress and committed alike (the sweep of expired uploads goes through it)."""
        fresh, started, done = upload_id(), upload_id(), upload_id()
        for upload in (fresh, started, done):
            await resumable.create(upload, {"name": upload})
        await resumable.append(started, 0, chunks(b"12345"))
        await resumable.append(done, 0, chunks(b"xy"))
        target = key()
        await commit(resumable, done, target)
        listed = {upload.id: upload for upload in await resumable.list()}
        assert listed[fresh] == ResumableUpload(fresh, 0, {"name": fresh}, None)
        assert listed[started] == ResumableUpload(started, 5, {"name": started}, None)
        assert listed[done] == ResumableUpload(done, 2, {"name": done}, target)
