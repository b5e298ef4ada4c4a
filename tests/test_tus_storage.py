"""The resumable storage of the local backend and the file locker, driven directly (no HTTP)."""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import asynccontextmanager

import pytest

from upload_service.aio import complete
from upload_service.builtin.local_storage import LocalStorage
from upload_service.locking import FileLocker
from upload_service.storage import OffsetMismatch, ResumableStorage

from .lockers import check_take_over


async def chunks(*parts: bytes, then: BaseException | None = None):
    for part in parts:
        yield part
    if then is not None:
        raise then


@asynccontextmanager
async def opened(path):
    storage = LocalStorage(path)
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


@pytest.fixture
async def storage(tmp_path):
    async with opened(tmp_path) as storage:
        yield storage


def test_local_storage_offers_resumable_uploads(tmp_path) -> None:
    assert isinstance(LocalStorage(tmp_path).resumable, ResumableStorage)


async def test_append_finish_and_commit(storage) -> None:
    store = storage.resumable
    await store.create("upload-aaaaaaaaaaaaaaaa", {"k": 1})
    await store.append("upload-aaaaaaaaaaaaaaaa", 0, chunks(b"abc", b"def"))
    with pytest.raises(OffsetMismatch):
        await store.append("upload-aaaaaaaaaaaaaaaa", 2, chunks(b"x"))
    upload = await store.append("upload-aaaaaaaaaaaaaaaa", 6, chunks(b"ghi"))
    assert upload.offset == 9 and upload.info == {"k": 1}
    staged = await store.stage("upload-aaaaaaaaaaaaaaaa")
    await staged.finish()
    assert staged.sha256 == hashlib.sha256(b"abcdefghi").hexdigest()
    stored = await staged.commit("files/owner/one", {"m": 2})
    assert (await storage.stat("files/owner/one")).sha256 == stored.sha256
    assert (await store.get("upload-aaaaaaaaaaaaaaaa")).committed == "files/owner/one"
    assert b"".join([c async for c in storage.read("files/owner/one")]) == b"abcdefghi"


async def test_a_cut_append_keeps_what_arrived_and_a_failed_check_keeps_nothing(storage) -> None:
    store = storage.resumable
    await store.create("upload-bbbbbbbbbbbbbbbb", {})
    with pytest.raises(ConnectionError):
        await store.append("upload-bbbbbbbbbbbbbbbb", 0, chunks(b"12345", then=ConnectionError()))
    assert (await store.get("upload-bbbbbbbbbbbbbbbb")).offset == 5

    def refuse() -> None:
        raise ValueError("checksum")

    with pytest.raises(ValueError):
        await store.append("upload-bbbbbbbbbbbbbbbb", 5, chunks(b"678"), verify=refuse)
    assert (await store.get("upload-bbbbbbbbbbbbbbbb")).offset == 5
    await store.append("upload-bbbbbbbbbbbbbbbb", 5, chunks(b"ABC"), verify=lambda: None)
    staged = await store.stage("upload-bbbbbbbbbbbbbbbb")
    await staged.finish()
    assert staged.sha256 == hashlib.sha256(b"12345ABC").hexdigest()


async def test_another_worker_rehashes_on_finish(tmp_path) -> None:
    """A second storage object on the same folder has no running hash: it reads the file once instead."""
    async with opened(tmp_path) as one, opened(tmp_path) as two:
        first, second = one.resumable, two.resumable
        await first.create("upload-cccccccccccccccc", {})
        await first.append("upload-cccccccccccccccc", 0, chunks(b"a" * 3000))
        await second.append("upload-cccccccccccccccc", 3000, chunks(b"b" * 3000))
        staged = await second.stage("upload-cccccccccccccccc")
        await staged.finish()
        assert staged.sha256 == hashlib.sha256(b"a" * 3000 + b"b" * 3000).hexdigest()
        assert [upload.id for upload in await first.list()] == ["upload-cccccccccccccccc"]
        assert await first.delete("upload-cccccccccccccccc") and await first.list() == []


async def test_file_locker_asks_the_holder_to_release(tmp_path) -> None:
    locker = FileLocker(tmp_path, wait=5, poll=0.01, watch=0.01)
    await check_take_over(locker, locker, "upload-dddddddddddddddd")


async def test_file_locker_refuses_what_is_not_an_id(tmp_path) -> None:
    with pytest.raises(ValueError):
        async with FileLocker(tmp_path).hold("../escape"):
            pass


async def test_complete_finishes_its_work_through_cancellations() -> None:
    finished: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def clean_up() -> None:
        started.set()
        await release.wait()
        finished.append("done")

    task = asyncio.create_task(complete(clean_up()))
    await started.wait()
    task.cancel()
    await asyncio.sleep(0)  # one turn of the loop: the task has taken the first cancellation
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["done"]
