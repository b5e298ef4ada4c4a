"""The local-disk backend's guarantees, exercised directly: atomic commits, one winner per move, crash sweeps."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from upload_service.builtin.local_storage import WRITE_BUFFER, BufferedFileWriter, LocalObjectWriter, LocalStorage
from upload_service.errors import ObjectExists, ObjectNotFound


async def _put(storage: LocalStorage, key: str, data: bytes, metadata: dict | None = None):
    async with storage.writer() as writer:
        await writer.write(data)
        return await writer.commit(key, metadata or {})


async def test_commit_is_invisible_until_done_and_abort_leaves_nothing(tmp_path):
    storage = LocalStorage(tmp_path)
    async with storage.writer() as writer:
        await writer.write(b"x" * 3_000_000)
        assert await storage.stat("files/o/a") is None
    assert list(storage.staging.iterdir()) == []
    stored = await _put(storage, "files/o/a", b"hello", {"k": "v"})
    assert stored.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert (await storage.stat("files/o/a")).metadata == {"k": "v"}
    assert b"".join([chunk async for chunk in storage.read("files/o/a", 1, 4)]) == b"ell"


async def test_committing_over_an_existing_key_is_refused(tmp_path):
    storage = LocalStorage(tmp_path)
    await _put(storage, "files/o/a", b"first")
    with pytest.raises(ObjectExists):
        await _put(storage, "files/o/a", b"second")
    assert b"".join([c async for c in storage.read("files/o/a")]) == b"first"
    assert list(storage.staging.iterdir()) == []


async def test_exactly_one_of_racing_moves_wins(tmp_path):
    storage = LocalStorage(tmp_path)
    await _put(storage, "temp/o/a", b"data")
    outcomes = await asyncio.gather(*(storage.move("temp/o/a", "files/o/a", {"n": i}) for i in range(8)),
                                    return_exceptions=True)
    winners = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    assert len(winners) == 1
    assert all(isinstance(outcome, ObjectNotFound) for outcome in outcomes if isinstance(outcome, Exception))
    assert (await storage.stat("files/o/a")).metadata == winners[0].metadata


async def test_sweep_removes_only_abandoned_staging(tmp_path):
    storage = LocalStorage(tmp_path)
    abandoned = storage.staging / "abandoned"
    abandoned.mkdir()
    (abandoned / "data").write_bytes(b"half")
    old = time.time() - 60
    os.utime(abandoned, (old, old))
    async with storage.writer() as live:
        await live.write(b"x" * (WRITE_BUFFER + 1))  # past one buffer: the first batch makes the staging folder
        await live.finish()
        os.utime(live._dir, (old, old))
        assert await storage.sweep_staging() == 1
        assert live._dir.exists() and not abandoned.exists()
        await live.commit("files/o/live", {})
    assert await storage.stat("files/o/live") is not None


async def test_a_reader_that_started_finishes_after_a_delete(tmp_path):
    storage = LocalStorage(tmp_path)
    data = os.urandom(2_000_000)
    await _put(storage, "files/o/a", data)
    reader = storage.read("files/o/a")
    first = await anext(reader)
    assert await storage.delete("files/o/a")
    rest = b"".join([chunk async for chunk in reader])
    assert first + rest == data
    assert await storage.stat("files/o/a") is None


async def test_listing_is_in_key_order_with_start_after(tmp_path):
    storage = LocalStorage(tmp_path)
    for name in ("c", "a", "b"):
        await _put(storage, f"files/o/{name}", name.encode())
    await _put(storage, "files/p/z", b"other owner")
    assert [o.key for o in await storage.list("files/o/")] == ["files/o/a", "files/o/b", "files/o/c"]
    assert [o.key for o in await storage.list("files/o/", start_after="files/o/a", limit=1)] == ["files/o/b"]
    assert len(await storage.list("files/")) == 4


@pytest.mark.parametrize("key", ["../x", "files/../../etc", "/abs", "files//x", "files/a.b", ""])
async def test_keys_that_could_escape_are_refused(tmp_path, key):
    storage = LocalStorage(tmp_path)
    with pytest.raises(ValueError):
        await _put(storage, key, b"x")


class _SlowCommitWriter(LocalObjectWriter):
    def _commit_sync(self, *args) -> None:
        time.sleep(0.5)  # a slow fdatasync: the request is cancelled meanwhile
        super()._commit_sync(*args)


async def test_a_commit_cancelled_midway_finishes_before_the_writer_aborts(tmp_path):
    """Before, the abort of a cancelled request closed the writer's file descriptor while the commit thread
    still used it (a second close of that number could hit another connection's socket)."""
    storage = LocalStorage(tmp_path)
    data = b"y" * 3_000_000

    async def upload() -> None:
        async with _SlowCommitWriter(storage) as writer:
            await writer.write(data)
            await writer.commit("files/o/slow", {})

    task = asyncio.create_task(upload())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stored = await storage.stat("files/o/slow")  # the commit ran to its end, whole
    assert stored is not None and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join([chunk async for chunk in storage.read("files/o/slow")]) == data
    assert list(storage.staging.iterdir()) == []


@pytest.mark.parametrize("hash_beside", [True, False])
async def test_a_rest_hashed_in_place_is_written_but_not_hashed_again(tmp_path, hash_beside):
    hasher = hashlib.sha256()
    with open(tmp_path / "f", "wb") as handle:
        out = BufferedFileWriter(handle.fileno(), [hasher], hash_beside=hash_beside)
        await out.write(b"small")
        out.hash_rest()
        assert hasher.hexdigest() == hashlib.sha256(b"small").hexdigest()
        out.store_sync(await out.take_rest())
    assert hasher.hexdigest() == hashlib.sha256(b"small").hexdigest()
    assert (tmp_path / "f").read_bytes() == b"small"
