"""The resumable storage of the local backend and the file locker, driven directly (no HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from contextlib import asynccontextmanager

import pytest

from upload_service.aio import complete
from upload_service.builtin.local_storage import LocalStorage
from upload_service.locking import FileLocker, LockBusy
from upload_service.storage import OffsetMismatch, ResumableStorage

from .lockers import check_namespaces, check_take_over


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


async def test_file_locker_keeps_namespaces_apart(tmp_path) -> None:
    await check_namespaces(FileLocker(tmp_path, wait=1, poll=0.01))


def age(*paths, seconds: float = 3600) -> None:
    old = time.time() - seconds
    for path in paths:
        os.utime(path, (old, old))


async def test_file_locker_sweep_removes_only_old_lock_files_nobody_holds(tmp_path) -> None:
    locker = FileLocker(tmp_path, grace=60)
    async with locker.hold("tus", "young"), locker.hold("tus", "held"):
        pass
    legacy = tmp_path / "from-an-older-version.lock"  # before namespaces, lock files lay in the folder itself
    legacy.touch()
    stray = tmp_path / "tus" / "gone.release"  # a release request whose lock went meanwhile
    stray.touch()
    age(tmp_path / "tus" / "held.lock", legacy, stray)
    held = os.open(tmp_path / "tus" / "held.lock", os.O_RDONLY)  # another worker holds this one
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert await locker.sweep() == 2
        assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["held.lock", "young.lock"]
    finally:
        os.close(held)
    assert await locker.sweep() == 1
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == ["young.lock"]


async def test_file_locker_sweep_spares_a_file_that_replaced_the_one_it_opened(tmp_path, monkeypatch) -> None:
    """The sweep opened an old lock file; before it could lock it, the file was forgotten (unlinked) and another
    worker locked a new one at that path. The sweep then gets the flock of the old file at once: it must see that
    the path names another file now and leave it, or a third request would lock a fresh file beside the holder."""
    locker = FileLocker(tmp_path, grace=60)
    async with locker.hold("tus", "replaced"):
        pass
    path = tmp_path / "tus" / "replaced.lock"
    age(path)
    real_open, holder = os.open, []

    def open_then_replace(name, flags, *args):
        fd = real_open(name, flags, *args)
        if str(name) == str(path) and not holder:
            path.unlink()  # forgotten by its holder ...
            holder.append(real_open(path, os.O_RDWR | os.O_CREAT))  # ... and locked anew by another worker
            fcntl.flock(holder[0], fcntl.LOCK_EX)
        return fd

    monkeypatch.setattr(os, "open", open_then_replace)
    try:
        assert await locker.sweep() == 0
    finally:
        monkeypatch.undo()
    try:
        assert path.exists() and os.fstat(holder[0]).st_ino == os.stat(path).st_ino
    finally:
        os.close(holder[0])


async def test_file_locker_sweep_never_lets_two_holders_in(tmp_path) -> None:
    """Sweeps unlink lock files while requests take, let go of and forget them: a request (or a sweep) that
    opened a file just before it went must not hold it, or unlink its successor, alongside one that locked the
    new file (flock on an unlinked file)."""
    locker = FileLocker(tmp_path, grace=0)
    inside, entries, swept = 0, 0, 0
    started = time.monotonic()

    def running() -> bool:  # a second at least, and until the sweeps removed files a few times (10 s at most)
        elapsed = time.monotonic() - started
        return elapsed < 1.0 or (swept < 5 and elapsed < 10.0)

    async def take_and_let_go() -> None:
        nonlocal inside, entries
        while running():
            with contextlib.suppress(LockBusy):
                async with locker.hold("tus", "contended", take_over=False) as lock:
                    inside += 1
                    entries += 1
                    if entries % 2:
                        lock.forget()  # as after deleting an upload: the holder unlinks the file
                    assert inside == 1, "two holders at once"
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                    inside -= 1
            await asyncio.sleep(0.001)  # moments with no holder: the sweeps get their chance

    async def sweep_all_along() -> None:
        nonlocal swept
        while running():
            swept += await locker.sweep()

    await asyncio.gather(*(take_and_let_go() for _ in range(4)), sweep_all_along(), sweep_all_along())
    assert entries > 50 and swept >= 5, (entries, swept)  # both really ran, and met


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
