"""The local-disk backend's guarantees, exercised directly: atomic commits, one winner per move, crash sweeps."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from upload_service.builtin.local_storage import LocalObjectWriter, LocalStorage, layout as layout_module
from upload_service.builtin.local_storage.buffered import WRITE_BUFFER, BufferedFileWriter
from upload_service.errors import ObjectExists, ObjectNotFound


@pytest.fixture
async def storage(tmp_path):
    """A local storage on a fresh folder, open (its threads running) for the test."""
    opened = LocalStorage(tmp_path)
    await opened.open()
    yield opened
    await opened.close()


async def _put(storage: LocalStorage, key: str, data: bytes, metadata: dict | None = None):
    async with storage.writer() as writer:
        await writer.write(data)
        return await writer.commit(key, metadata or {})


async def test_commit_is_invisible_until_done_and_abort_leaves_nothing(storage):
    async with storage.writer() as writer:
        await writer.write(b"x" * 3_000_000)
        assert await storage.stat("files/o/a") is None
    assert list(storage.layout.staging.iterdir()) == []
    stored = await _put(storage, "files/o/a", b"hello", {"k": "v"})
    assert stored.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert (await storage.stat("files/o/a")).metadata == {"k": "v"}
    assert b"".join([chunk async for chunk in storage.read("files/o/a", 1, 4)]) == b"ell"


async def test_committing_over_an_existing_key_is_refused(storage):
    await _put(storage, "files/o/a", b"first")
    with pytest.raises(ObjectExists):
        await _put(storage, "files/o/a", b"second")
    assert b"".join([c async for c in storage.read("files/o/a")]) == b"first"
    assert list(storage.layout.staging.iterdir()) == []


@pytest.mark.parametrize("unnamed", [True, False])
async def test_a_small_object_is_linked_from_an_unnamed_file_and_a_large_one_staged(storage, monkeypatch, unnamed):
    assert storage.layout.unnamed_files, "O_TMPFILE and linkat work on the test machine's file systems"
    storage.layout.unnamed_files = unnamed
    staged = []
    rename_into = layout_module.rename_into
    monkeypatch.setattr(layout_module, "rename_into",
                        lambda source, target: staged.append(target.name) or rename_into(source, target))
    await _put(storage, "files/o/small", b"s" * 10_000, {"n": 1})
    await _put(storage, "files/o/large", b"l" * (WRITE_BUFFER + 1))
    assert staged == (["large"] if unnamed else ["small", "large"])
    assert (await storage.stat("files/o/small")).metadata == {"n": 1}
    assert b"".join([c async for c in storage.read("files/o/small")]) == b"s" * 10_000
    with pytest.raises(ObjectExists):  # a taken name is refused as a rename refuses it
        await _put(storage, "files/o/small", b"other")
    assert b"".join([c async for c in storage.read("files/o/small")]) == b"s" * 10_000
    assert list(storage.layout.staging.iterdir()) == []


async def test_exactly_one_of_racing_moves_wins(storage):
    await _put(storage, "temp/o/a", b"data")
    outcomes = await asyncio.gather(*(storage.move("temp/o/a", "files/o/a", {"n": i}) for i in range(8)),
                                    return_exceptions=True)
    winners = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    assert len(winners) == 1
    assert all(isinstance(outcome, ObjectNotFound) for outcome in outcomes if isinstance(outcome, Exception))
    assert (await storage.stat("files/o/a")).metadata == winners[0].metadata


async def test_sweep_removes_only_abandoned_staging(storage):
    abandoned = storage.layout.staging / "abandoned"
    abandoned.mkdir()
    (abandoned / "data").write_bytes(b"half")
    old = time.time() - 60
    os.utime(abandoned, (old, old))
    async with storage.writer() as live:
        await live.write(b"x" * (WRITE_BUFFER + 1))  # past one buffer: the first batch makes the staging file
        await live.finish()
        os.utime(live._staging, (old, old))
        assert await storage.sweep_staging() == 1
        assert live._staging.exists() and not abandoned.exists()
        await live.commit("files/o/live", {})
    assert await storage.stat("files/o/live") is not None


def _open_files_outside_the_index(root: os.PathLike[str]) -> int:
    """Descriptors of this process on files under ``root`` other than the index's (SQLite opens its
    connections, and their files, as threads first need them)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(os.fspath(root)) and "/.index/" not in target:
            count += 1
    return count


async def test_a_finished_writer_holds_no_descriptor(storage):
    """A batch stages every file before it commits any: a finished file must not keep its staging file open, or
    one request of many files takes every descriptor of the process (issue 18). Synced at finish, committed by
    path."""
    data = os.urandom(WRITE_BUFFER + 1000)
    root = storage.layout.root
    before = _open_files_outside_the_index(root)
    async with contextlib.AsyncExitStack() as stack:
        writers = [await stack.enter_async_context(storage.writer()) for _ in range(30)]
        for writer in writers:
            await writer.write(data)
            await writer.finish()
        assert _open_files_outside_the_index(root) <= before + 1
        for number, writer in enumerate(writers):
            await writer.commit(f"files/o/many{number}", {})
    for number in range(30):
        stored = await storage.stat(f"files/o/many{number}")
        assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert b"".join([chunk async for chunk in storage.read("files/o/many29")]) == data
    assert _open_files_outside_the_index(root) <= before + 1
    assert list(storage.layout.staging.iterdir()) == []


async def test_the_sweep_spares_the_staging_of_open_storages_and_removes_that_of_dead_ones(storage):
    """Staged files hold no lock of their own: each storage's owner lock speaks for its folders, in this process
    or another. A storage that died (its lock free) leaves folders the sweep removes, with its lock file."""
    alive, dead = LocalStorage(storage.layout.root), LocalStorage(storage.layout.root)
    await alive.open()
    await dead.open()
    old = time.time() - 60
    staged = []
    for other in (alive, dead):
        writer = other.writer()
        await writer.write(b"x" * (WRITE_BUFFER + 1))
        await writer.finish()
        os.utime(writer._staging, (old, old))
        staged.append(writer)
    os.close(dead.owner._fd)  # what a kill -9 does to the lock: let go of it, leaving the file
    dead.owner._fd = None
    for lock in alive.layout.owners.iterdir():
        os.utime(lock, (old, old))
    assert await storage.sweep_staging() == 1
    assert staged[0]._staging.exists() and not staged[1]._staging.exists()
    assert sorted(path.name for path in storage.layout.owners.iterdir()) == sorted(
        [storage.layout.owner, alive.layout.owner])
    assert (await staged[0].commit("files/o/alive", {})).size == WRITE_BUFFER + 1
    await staged[1].abort()
    await alive.close()
    await dead.close()
    assert [path.name for path in storage.layout.owners.iterdir()] == [storage.layout.owner]


async def test_the_sweep_spares_a_folder_whose_data_an_older_writer_locks(storage):
    """Before owner locks, a writer held an flock on its ``data`` file while it wrote: such a folder (no owner in
    its name) is spared while locked, and removed once not."""
    folder = storage.layout.staging / ("a" * 32)
    folder.mkdir()
    with await asyncio.to_thread(open, folder / "data", "wb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        old = time.time() - 60
        os.utime(folder, (old, old))
        assert await storage.sweep_staging() == 0 and folder.exists()
    assert await storage.sweep_staging() == 1 and not folder.exists()


async def test_a_reader_that_started_finishes_after_a_delete(storage):
    data = os.urandom(2_000_000)
    await _put(storage, "files/o/a", data)
    reader = storage.read("files/o/a")
    first = await anext(reader)
    assert await storage.delete("files/o/a")
    rest = b"".join([chunk async for chunk in reader])
    assert first + rest == data
    assert await storage.stat("files/o/a") is None


async def test_listing_is_in_key_order_with_start_after(storage):
    for name in ("c", "a", "b"):
        await _put(storage, f"files/o/{name}", name.encode())
    await _put(storage, "files/p/z", b"other owner")
    assert [o.key for o in await storage.list("files/o/")] == ["files/o/a", "files/o/b", "files/o/c"]
    assert [o.key for o in await storage.list("files/o/", start_after="files/o/a", limit=1)] == ["files/o/b"]
    assert len(await storage.list("files/")) == 4


async def test_the_threads_start_with_open_and_end_with_close(tmp_path):
    """No pool at import or construction; each storage has its own from ``open`` to ``close``."""
    first, second = LocalStorage(tmp_path), LocalStorage(tmp_path)
    with pytest.raises(RuntimeError, match="not open"):
        await first.stat("files/o/a")
    before = set(threading.enumerate())
    await first.open()
    await second.open()
    assert first.threads.pool is not second.threads.pool
    await _put(first, "files/o/a", b"x")
    assert (await second.stat("files/o/a")).size == 1
    started = {thread for thread in set(threading.enumerate()) - before if thread.name.startswith("local-storage")}
    assert started
    await first.close()
    await second.close()
    assert not any(thread.is_alive() for thread in started)


def test_importing_the_backend_starts_no_thread():
    code = ("import threading, upload_service.builtin.local_storage, upload_service.content_types, "
            "upload_service.service; print(threading.active_count())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "1"


@pytest.mark.parametrize("key", ["../x", "files/../../etc", "/abs", "files//x", "files/a.b", ""])
async def test_keys_that_could_escape_are_refused(storage, key):
    with pytest.raises(ValueError):
        await _put(storage, key, b"x")


class _SlowCommitWriter(LocalObjectWriter):
    committing = threading.Event()
    may_finish = threading.Event()

    def _commit_sync(self, *args):
        self.committing.set()
        self.may_finish.wait(5)  # a slow fdatasync: the request is cancelled meanwhile
        return super()._commit_sync(*args)


async def test_a_commit_cancelled_midway_finishes_before_the_writer_aborts(storage):
    """Before, the abort of a cancelled request closed the writer's file descriptor while the commit thread
    still used it (a second close of that number could hit another connection's socket)."""
    data = b"y" * 3_000_000

    async def upload() -> None:
        async with _SlowCommitWriter(storage) as writer:
            await writer.write(data)
            await writer.commit("files/o/slow", {})

    task = asyncio.create_task(upload())
    assert await asyncio.to_thread(_SlowCommitWriter.committing.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)  # the cancelled request goes on to its abort while the commit still runs
    _SlowCommitWriter.may_finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = await storage.stat("files/o/slow")  # the commit ran to its end, whole
    assert stored is not None and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join([chunk async for chunk in storage.read("files/o/slow")]) == data
    assert list(storage.layout.staging.iterdir()) == []


@pytest.mark.parametrize("hash_beside", [True, False])
async def test_a_rest_hashed_in_place_is_written_but_not_hashed_again(tmp_path, hash_beside):
    hasher = hashlib.sha256()
    with await asyncio.to_thread(open, tmp_path / "f", "wb") as handle, ThreadPoolExecutor(2) as pool:
        out = BufferedFileWriter(handle.fileno(), [hasher], pool, hash_beside=hash_beside)
        await out.write(b"small")
        out.hash_rest()
        assert hasher.hexdigest() == hashlib.sha256(b"small").hexdigest()
        out.store_sync(await out.take_rest())
    assert hasher.hexdigest() == hashlib.sha256(b"small").hexdigest()
    assert (tmp_path / "f").read_bytes() == b"small"
