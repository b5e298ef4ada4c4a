"""``S3Storage`` through its Python interface against SeaweedFS's S3 gateway: races and crash recovery.

The end-to-end suites cover what users do; these tests cover the interleavings a user cannot time:
two moves of one object at once, a delete racing a move, and the half-done operations of a process that
died, which the sweep must finish or undo.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace

import pytest

from upload_service.errors import ObjectExists, ObjectNotFound, StorageError
from upload_service.storage import OffsetMismatch, StorageBusy
from upload_service_s3 import journal
from upload_service_s3.client import is_precondition_failed
from upload_service_s3.settings import S3Settings
from upload_service_s3.storage import S3Storage
from upload_service_s3.writer import FIRST_PART_SIZE, part_size

from .s3 import CREDENTIALS

MiB = 1024 * 1024


@pytest.fixture
async def store(s3_server, monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.bucket(prefix="svc/")
    storage = S3Storage(S3Settings(bucket=bucket.name, endpoint_url=s3_server.url, prefix=bucket.prefix,
                                   staging_timeout=1))
    await storage.open()
    yield storage, bucket
    await storage.close()


async def _put(storage: S3Storage, key: str, data: bytes, **metadata):
    async with storage.writer() as writer:
        for start in range(0, len(data), 64 * 1024):
            await writer.write(data[start:start + 64 * 1024])
        return await writer.commit(key, metadata)


async def _read(storage: S3Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return await _drain(storage.read(key, start, end))


async def _drain(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def test_part_sizes_fit_the_largest_s3_object_in_10000_parts():
    sizes = [part_size(number) for number in range(1, 10_001)]
    assert min(sizes) == FIRST_PART_SIZE >= 5 * MiB
    assert max(sizes) <= 5 * 1024 * MiB
    assert sum(sizes) >= 5 * 1024**4


async def test_multipart_object_reads_back_whole_and_in_ranges(store):
    storage, bucket = store
    data = hashlib.sha256(b"x").digest() * (17 * MiB // 32) + b"tail"
    stored = await _put(storage, "files/o/big", data, filename="big.bin")
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (await storage.stat("files/o/big")).metadata == {"filename": "big.bin"}
    assert await _read(storage, "files/o/big") == data
    boundary = 8 * MiB
    assert await _read(storage, "files/o/big", boundary - 3, boundary + 5) == data[boundary - 3:boundary + 5]
    assert await _read(storage, "files/o/big", len(data) - 4) == b"tail"
    assert bucket.leftovers() == []


async def test_empty_object(store):
    storage, _ = store
    stored = await _put(storage, "files/o/empty", b"")
    assert stored.size == 0 and stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert await _read(storage, "files/o/empty") == b""


async def test_list_is_in_key_order_with_start_after_and_limit(store):
    storage, _ = store
    keys = [f"files/o/k{i:02d}" for i in range(7)]
    for key in reversed(keys):
        await _put(storage, key, key.encode())
    await _put(storage, "files/other/k00", b"not mine")
    assert [item.key for item in await storage.list("files/o/")] == keys
    page = await storage.list("files/o/", start_after=keys[2], limit=3)
    assert [item.key for item in page] == keys[3:6]
    assert [item.key for item in await storage.list("files/o/", start_after=keys[5], limit=3)] == keys[6:]


async def test_a_listing_across_owners_paged_by_its_last_key_misses_nothing(store):
    """SeaweedFS lists ``temp/a/...`` before ``temp/a-b/...`` (a folder's entries where its name sorts), where S3's
    byte order puts ``-`` before ``/``; a sweep that pages on from the last key listed still sees every key."""
    storage, _ = store
    keys = ["temp/a/1", "temp/a/2", "temp/a-b/1", "temp/a_b/1", "temp/A/1", "temp/a0/1"]
    for key in keys:
        await _put(storage, key, b"x")
    seen, after = [], None
    while page := await storage.list("temp/", start_after=after, limit=2):
        seen += [item.key for item in page]
        after = page[-1].key
    assert sorted(seen) == sorted(keys) and len(seen) == len(keys)


async def test_a_committed_key_is_never_overwritten(store):
    storage, bucket = store
    await _put(storage, "files/o/taken", b"first")
    with pytest.raises(ObjectExists):
        await _put(storage, "files/o/taken", b"second")
    assert await _read(storage, "files/o/taken") == b"first"
    assert bucket.leftovers() == []


async def test_of_two_racing_moves_exactly_one_wins(store):
    storage, bucket = store
    await _put(storage, "temp/o/a", b"moving", owner="o")
    results = await asyncio.gather(*(storage.move("temp/o/a", "files/o/a", {"persisted": True}) for _ in range(3)),
                                   return_exceptions=True)
    winners = [result for result in results if not isinstance(result, Exception)]
    assert len(winners) == 1 and winners[0].metadata == {"persisted": True}
    assert all(isinstance(result, (ObjectNotFound, ObjectExists)) for result in results if result not in winners)
    assert await storage.stat("temp/o/a") is None
    assert await _read(storage, "files/o/a") == b"moving"
    assert bucket.leftovers() == []


async def test_of_racing_journal_creates_exactly_one_wins(store):
    """What every lock here rests on, and S3 guarantees: a conditional create is atomic; this fails if the test
    S3 server lets two win. SeaweedFS serializes conditional writes of one key under a lock whose waiters retry
    once a second, so each round of 4 racers takes up to a second or two (8 racers took up to 4 s): 6 rounds
    here; plugins/s3/README.md ("Tested against") has the longer runs (none let two win)."""
    storage, _ = store
    for round_ in range(6):
        results = await asyncio.gather(*(storage.journal.write(f"race{round_}", {"op": "test"}, create=True)
                                         for _ in range(4)), return_exceptions=True)
        winners = [result for result in results if not isinstance(result, Exception)]
        assert len(winners) == 1, results
        assert all(is_precondition_failed(result) for result in results if result not in winners)


async def test_a_delete_racing_a_move_never_leaves_a_record_without_bytes(store):
    storage, bucket = store
    for round_ in range(5):
        src, dst = f"temp/o/r{round_}", f"files/o/r{round_}"
        await _put(storage, src, b"contested")
        await asyncio.gather(storage.move(src, dst), storage.delete(src), return_exceptions=True)
        assert await storage.stat(src) is None
        if await storage.stat(dst) is not None:
            assert await _read(storage, dst) == b"contested"
    assert bucket.leftovers() == []


async def test_an_update_racing_a_delete_does_not_bring_the_object_back(store):
    storage, bucket = store
    await _put(storage, "files/o/u", b"short-lived")
    await asyncio.gather(storage.update_metadata("files/o/u", {"late": True}), storage.delete("files/o/u"),
                         return_exceptions=True)
    assert await storage.stat("files/o/u") is None
    assert bucket.leftovers() == []


async def test_a_bucket_deleted_under_a_running_storage_fails_every_method_with_a_storage_error(store, s3_server,
                                                                                              monkeypatch):
    """S3's errors are the core's at the backend's boundary: botocore's ClientError (NoSuchBucket here) never
    escapes a method of the storage, its writer, or its resumable uploads."""
    storage, bucket = store
    uploads = storage.resumable
    s3_server.client().delete_bucket(Bucket=bucket.name)
    monkeypatch.setattr(storage.settings, "presigned_downloads", True)
    calls = {
        "stat": lambda: storage.stat("files/o/a"),
        "read": lambda: _read(storage, "files/o/a"),
        "list": lambda: storage.list("files/o/"),
        "delete": lambda: storage.delete("files/o/a"),
        "move": lambda: storage.move("temp/o/a", "files/o/a"),
        "update_metadata": lambda: storage.update_metadata("files/o/a", {}),
        "writer": lambda: _put(storage, "files/o/a", b"bytes"),
        "sweep_staging": storage.sweep_staging,
        "check_ready": storage.check_ready,
        "download_url": lambda: storage.download_url("files/o/a", "a.bin", "application/octet-stream"),
        "resumable.create": lambda: uploads.create("up-gone", {}),
        "resumable.get": lambda: uploads.get("up-gone"),
        "resumable.set_info": lambda: uploads.set_info("up-gone", {}),
        "resumable.append": lambda: uploads.append("up-gone", 0, _chunks(b"x")),
        "resumable.read": lambda: _drain(uploads.read("up-gone")),
        "resumable.stage": lambda: uploads.stage("up-gone"),
        "resumable.delete": lambda: uploads.delete("up-gone"),
        "resumable.list": uploads.list,
    }
    for name, call in calls.items():
        with pytest.raises(StorageError) as raised:
            await call()
        assert not isinstance(raised.value, (ObjectNotFound, ObjectExists)), name
        assert "NoSuchBucket" in str(raised.value), name


async def test_an_s3_that_cuts_its_answers_short_gives_storage_errors(monkeypatch):
    """A connection lost while a body streams is aiohttp's own error, not botocore's: it is translated too."""

    async def answer_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nContent-Type: application/json\r\n\r\n{\"blob\"")
        await writer.drain()
        writer.close()

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    server = await asyncio.start_server(answer_short, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    storage = S3Storage(S3Settings(bucket="cut-short", endpoint_url=f"http://127.0.0.1:{port}"))
    await storage.open()
    try:
        for call in (lambda: storage.stat("files/o/a"), lambda: _read(storage, "files/o/a"),
                     lambda: storage.resumable.get("up-cut")):
            with pytest.raises(StorageError, match="payload is not completed"):
                await call()
    finally:
        await storage.close()
        server.close()
        await server.wait_closed()


async def _after_staging_timeout(bucket) -> None:
    """Until what is in the bucket now is older than the fixture's staging timeout (1 s) by the S3 server's clock."""
    await asyncio.to_thread(bucket.wait_out, 1)


async def test_sweep_finishes_a_move_whose_process_died(store):
    storage, bucket = store
    stored = await _put(storage, "temp/o/m", b"half moved")
    record = await storage.records.get("temp/o/m")
    await storage.journal.create(record.blob_id, {"op": "move", "key": "temp/o/m", "dst": "files/o/m"})
    await storage.records.put(type(record)("files/o/m", record.blob_id, stored.size, stored.sha256,
                                           stored.created_at, {}), create=True)  # died here: both records
    await _after_staging_timeout(bucket)
    assert await storage.sweep_staging() == 1
    assert await storage.stat("temp/o/m") is None
    assert await _read(storage, "files/o/m") == b"half moved"
    assert bucket.leftovers() == []


async def test_sweep_finishes_a_delete_whose_process_died(store):
    storage, bucket = store
    await _put(storage, "files/o/d", b"half deleted")
    record = await storage.records.get("files/o/d")
    await storage.journal.create(record.blob_id, {"op": "delete", "key": "files/o/d"})  # died here
    await _after_staging_timeout(bucket)
    assert await storage.sweep_staging() == 1
    assert await storage.stat("files/o/d") is None
    assert bucket.keys() == []


async def test_sweep_keeps_a_write_that_committed_before_its_process_died(store):
    storage, bucket = store
    await _put(storage, "files/o/w", b"committed")
    record = await storage.records.get("files/o/w")
    await storage.journal.create(record.blob_id, {"op": "write", "key": "files/o/w"})  # entry not yet removed
    await _after_staging_timeout(bucket)
    assert await storage.sweep_staging() == 1
    assert await _read(storage, "files/o/w") == b"committed"
    assert bucket.leftovers() == []


async def test_sweep_leaves_live_writers_alone(store):
    storage, bucket = store
    async with storage.writer() as writer:
        await writer.write(b"w" * (9 * MiB))  # a multipart upload with its first part sent
        await _after_staging_timeout(bucket)  # the writer keeps its journal entry fresh meanwhile
        assert await storage.sweep_staging() == 0
        stored = await writer.commit("files/o/live", {})
    assert stored.size == 9 * MiB and await storage.stat("files/o/live") is not None
    assert bucket.leftovers() == []


async def _other_instance(storage: S3Storage, **settings) -> S3Storage:
    """A second storage on the same bucket, as another instance of the service has."""
    other = S3Storage(storage.settings.model_copy(update=settings))
    await other.open()
    return other


async def test_a_dead_processs_work_is_taken_over_when_its_lease_runs_out_not_after_the_lock_wait(store):
    """kill -9 mid-change leaves the blob's entry; another instance's change takes it over once the entry is a
    lease (1 s here) old by the S3 server's clock, finishes the dead work, then does its own: well before the
    lock wait (10 s) after which it used to fail. The three cases run at once, to wait out one lease."""
    storage, bucket = store
    for key in ("files/o/cut-delete", "temp/o/cut-move", "files/o/cut-late"):
        await _put(storage, key, key.encode())
    deleting = await storage.records.get("files/o/cut-delete")
    await storage.journal.create(deleting.blob_id, {"op": "delete", "key": deleting.key})  # died here
    moving = await storage.records.get("temp/o/cut-move")
    await storage.journal.create(moving.blob_id, {"op": "move", "key": moving.key, "dst": "files/o/cut-move"})
    await storage.records.put(replace(moving, key="files/o/cut-move"), create=True)  # died here: both records
    late = await storage.records.get("files/o/cut-late")
    await storage.journal.create(late.blob_id, {"op": "delete", "key": late.key})
    await storage.records.delete(late.key)  # died here: the record went, the blob and the entry stayed
    other = await _other_instance(storage)
    try:
        started = time.monotonic()
        deleted, updated, late_deleted = await asyncio.gather(
            other.delete("files/o/cut-delete"), other.update_metadata("files/o/cut-move", {"after": "crash"}),
            _timed(other.delete("files/o/cut-late")))
        took = time.monotonic() - started
    finally:
        await other.close()
    assert deleted is True  # the dead delete was finished on its behalf: this one is done too
    assert updated.metadata == {"after": "crash"} and await storage.stat("temp/o/cut-move") is None
    assert late_deleted == (False, pytest.approx(0, abs=1))  # already gone: 404 at once, never the journal's wait
    assert took < journal.LOCK_WAIT_SECONDS / 2, f"took {took:.1f} s"
    print(f"taken over after {took:.1f} s (lease 1 s; the lock wait was {journal.LOCK_WAIT_SECONDS:.0f} s)")
    assert await _read(storage, "files/o/cut-move") == b"temp/o/cut-move"
    assert sorted(bucket.records()) == ["files/o/cut-move"]
    await _after_staging_timeout(bucket)
    assert await storage.sweep_staging() == 1  # the late delete's entry and blob
    assert bucket.leftovers() == []


async def _timed(call) -> tuple[object, float]:
    started = time.monotonic()
    return await call, time.monotonic() - started


async def test_a_change_waiting_on_live_work_is_busy_with_a_retry_after_and_never_takes_it_over(store, monkeypatch):
    """A live holder rewrites its entry every quarter lease, so it never looks dead: a delete waiting on it for
    longer than a lease gives up after the lock wait with ``StorageBusy`` (503 with Retry-After), and leaves the
    object and the holder alone. (A lease of 2 s here: the S3 clock's whole seconds make an entry look up to a
    second older than it is, and a loaded test machine can delay a refresh by a second.)"""
    storage, bucket = store
    monkeypatch.setattr(journal, "LOCK_WAIT_SECONDS", 3.5)  # a dead holder would have been taken over by then
    await _put(storage, "files/o/held", b"held")
    record = await storage.records.get("files/o/held")
    live, other = await _other_instance(storage, staging_timeout=2), await _other_instance(storage, staging_timeout=2)
    holder = await live.journal.lock(record.blob_id, {"op": "update", "key": record.key})
    holder.keep_alive()
    try:
        with pytest.raises(StorageBusy) as busy:
            await other.delete("files/o/held")
        assert 1 <= busy.value.retry_after <= 3
        await holder.release()
        assert await other.delete("files/o/held") is True
    finally:
        holder.stop_refreshing()
        await live.close()
        await other.close()
    assert bucket.keys() == []


# -- tus uploads in progress ------------------------------------------------------------------------------


async def _chunks(*parts: bytes, then: BaseException | None = None):
    for part in parts:
        yield part
    if then is not None:
        raise then


async def test_resumable_upload_across_part_boundaries_in_uneven_chunks(store):
    storage, bucket = store
    uploads = storage.resumable
    data = hashlib.sha256(b"tus").digest() * (19 * MiB // 32) + b"end"
    await uploads.create("up-one", {"owner": "o"})
    offset = 0
    for size in (3 * MiB, 6 * MiB, 1, 9 * MiB + 5):  # tails of every length, parts cut across appends
        offset = (await uploads.append("up-one", offset, _chunks(data[offset:offset + size]))).offset
    offset = (await uploads.append("up-one", offset, _chunks(data[offset:]))).offset
    assert offset == len(data)
    assert len(bucket.multipart_uploads()) == 1
    assert await storage.sweep_staging() == 0  # a tus upload's multipart upload is not an orphan
    staged = await uploads.stage("up-one")
    await staged.finish()
    assert staged.sha256 == hashlib.sha256(data).hexdigest()
    await staged.commit("files/o/tus", {"via": "tus"})
    assert await _read(storage, "files/o/tus") == data
    assert (await uploads.get("up-one")).committed == "files/o/tus"
    assert await uploads.delete("up-one")  # the upload goes, the file it became stays
    assert await _read(storage, "files/o/tus") == data
    assert bucket.leftovers() == [] and bucket.keys("resumable/") == []


async def test_resumable_cut_append_keeps_what_arrived_and_a_failed_check_keeps_nothing(store):
    storage, _ = store
    uploads = storage.resumable
    await uploads.create("up-two", {})
    with pytest.raises(ConnectionError):
        await uploads.append("up-two", 0, _chunks(b"12345", then=ConnectionError()))
    assert (await uploads.get("up-two")).offset == 5

    def refuse() -> None:
        raise ValueError("checksum")

    with pytest.raises(ValueError):
        await uploads.append("up-two", 5, _chunks(b"678"), verify=refuse)
    assert (await uploads.get("up-two")).offset == 5
    with pytest.raises(OffsetMismatch):
        await uploads.append("up-two", 4, _chunks(b"x"))
    await uploads.append("up-two", 5, _chunks(b"ABC"), verify=lambda: None)
    staged = await uploads.stage("up-two")
    await staged.finish()
    assert staged.sha256 == hashlib.sha256(b"12345ABC").hexdigest()


async def test_another_instance_rehashes_and_deleting_an_unfinished_upload_aborts_its_parts(store, s3_server):
    storage, bucket = store
    await storage.resumable.create("up-three", {})
    await storage.resumable.append("up-three", 0, _chunks(b"a" * (9 * MiB)))
    other = S3Storage(storage.settings)
    await other.open()
    try:
        await other.resumable.append("up-three", 9 * MiB, _chunks(b"b" * 1000))
        staged = await other.resumable.stage("up-three")
        await staged.finish()
        assert staged.sha256 == hashlib.sha256(b"a" * (9 * MiB) + b"b" * 1000).hexdigest()
        await storage.resumable.create("up-four", {})
        await storage.resumable.append("up-four", 0, _chunks(b"c" * (9 * MiB)))
        assert [upload.id for upload in await other.resumable.list()] == ["up-four", "up-three"]
        assert await other.resumable.delete("up-four") and await other.resumable.delete("up-three")
    finally:
        await other.close()
    assert bucket.multipart_uploads() == [] and bucket.keys() == []
