"""``DURABILITY`` and the local storage's one-file objects: what each mode flushes and when, and that objects of the
older layout (a folder with ``data`` and ``meta.json``) are still read, listed, moved and deleted."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from upload_service import Settings
from upload_service.builtin.local_storage import LocalStorage, group_commit
from upload_service.builtin.local_storage.buffered import WRITE_BUFFER
from upload_service.builtin.local_storage.layout import XATTR_ROOM
from upload_service.storage import record_writer

from .conftest import object_files
from .faults import wait_for
from .test_local_storage import _put

SMALL = b"s" * 10240


def test_durability_is_full_unless_set_to_relaxed():
    assert Settings().durability == "full"
    assert Settings(durability=" Relaxed ").durability == "relaxed"
    with pytest.raises(ValidationError, match="full"):
        Settings(durability="fast")


@pytest.fixture(params=["full", "relaxed"])
async def unopened(request, tmp_path):
    """A local storage in each mode, for the test to open (and closed after it)."""
    made = LocalStorage(tmp_path, request.param)
    yield made
    await made.close()


@pytest.fixture
async def storage(unopened):
    await unopened.open()
    return unopened


async def _read(storage: LocalStorage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key)])


async def test_both_modes_store_each_object_as_one_file_and_read_it_back(storage):
    large = os.urandom(WRITE_BUFFER + 5000)
    for key, data in (("files/o/small", b"x" * 100), ("files/o/large", large)):
        stored = await _put(storage, key, data, {"filename": "f.bin"})
        assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert await _read(storage, key) == data
        assert (await storage.stat(key)).metadata == {"filename": "f.bin"}
    assert object_files(storage.layout.objects) == [storage.layout.objects / "files/o/large",
                                                    storage.layout.objects / "files/o/small"]
    assert os.stat(storage.layout.objects / "files/o/small").st_size == 100  # no folder, no meta.json


async def test_an_object_of_the_older_layout_is_read_listed_moved_updated_and_deleted(unopened):
    storage = unopened  # the older object is there before the upgraded service first opens its storage
    folder = storage.layout.objects / "files" / "o" / "old"
    folder.mkdir(parents=True)
    (folder / "data").write_bytes(b"older")
    record = {"size": 5, "sha256": hashlib.sha256(b"older").hexdigest(),
              "created_at": datetime(2026, 1, 2, tzinfo=UTC).isoformat(), "metadata": {"filename": "old.txt"}}
    (folder / "meta.json").write_text(json.dumps(record))
    await storage.open()
    assert await storage.reindex() == 1  # waits for the rebuild of the new index that opening started
    await _put(storage, "files/o/new", b"newer")
    assert [stored.key for stored in await storage.list("files/o/")] == ["files/o/new", "files/o/old"]
    assert (await storage.stat("files/o/old")).metadata == {"filename": "old.txt"}
    assert await _read(storage, "files/o/old") == b"older"
    moved = await storage.move("files/o/old", "temp/o/old", {"filename": "moved.txt"})
    assert (moved.sha256, moved.created_at) == (record["sha256"], datetime(2026, 1, 2, tzinfo=UTC))
    assert (await storage.stat("temp/o/old")).metadata == {"filename": "moved.txt"}
    assert await storage.delete("temp/o/old") and await storage.stat("temp/o/old") is None
    assert not (storage.layout.objects / "temp" / "o" / "old").exists()


async def test_a_record_too_large_for_an_xattr_is_kept_beside_and_goes_with_its_object(storage):
    big = {"note": "n" * (XATTR_ROOM + 100)}
    await _put(storage, "files/o/a", b"abc", big)
    assert (await storage.stat("files/o/a")).metadata == big
    assert len(list(storage.layout.records.iterdir())) == 1
    await storage.update_metadata("files/o/a", {"note": "small again"})
    assert (await storage.stat("files/o/a")).metadata == {"note": "small again"}
    assert list(storage.layout.records.iterdir()) == []
    await storage.update_metadata("files/o/a", big)
    moved = await storage.move("files/o/a", "files/o/b")
    assert moved.metadata == big and await _read(storage, "files/o/b") == b"abc"
    assert await storage.delete("files/o/b")
    assert list(storage.layout.records.iterdir()) == []


async def test_an_object_shorter_than_its_record_is_not_shown(storage):
    """What a power cut under ``relaxed`` could leave on a file system that logs the rename before the data."""
    await _put(storage, "files/o/a", b"whole")
    os.truncate(storage.layout.objects / "files/o/a", 2)
    assert await storage.stat("files/o/a") is None


# -- when the service flushes ------------------------------------------------------------------------------


@pytest.fixture
def counted_syncs(monkeypatch):
    """Counts every flush the local storage can ask of the disk: fsync, fdatasync, and the wait for a file's
    writeback (``write_out``)."""
    counts = {"fsync": 0, "fdatasync": 0, "write_out": 0}
    real = {"fsync": os.fsync, "fdatasync": os.fdatasync, "write_out": group_commit.write_out}

    def counting(name):
        def call(fd):
            counts[name] += 1
            return real[name](fd)
        return call

    monkeypatch.setattr(os, "fsync", counting("fsync"))
    monkeypatch.setattr(os, "fdatasync", counting("fdatasync"))
    monkeypatch.setattr(group_commit, "write_out", counting("write_out"))
    return counts


def test_relaxed_never_waits_for_the_disk(upload_service_factory, counted_syncs):
    running = upload_service_factory(durability="relaxed", disabled_plugins="cleanup")
    client = running.client()
    large = os.urandom(WRITE_BUFFER + 5000)
    for name, data in (("small.bin", SMALL), ("large.bin", large)):
        response = client.put(f"/api/files/{name}", content=data)
        assert response.status_code == 201, response.text
        assert client.get(response.json()["url"]).content == data
    assert client.post("/api/upload", files={"file": ("m.bin", SMALL)}).status_code == 201
    assert counted_syncs == {"fsync": 0, "fdatasync": 0, "write_out": 0}


@pytest.mark.parametrize("in_order", [True, False])
def test_full_answers_only_after_the_flush_and_concurrent_uploads_share_one(upload_service_factory, counted_syncs,
                                                                            in_order):
    """The first upload's folder flush is held back: its 201 waits for it, and the uploads that finish meanwhile
    queue behind it and are flushed together, by one fsync of their folder, once it is let go. Where the file
    system does not log in order, each file is fsynced too before it is renamed into its folder."""
    running = upload_service_factory(disabled_plugins="cleanup")
    flush = running.service.storage.layout.flush
    flush.in_order = in_order
    held, release = threading.Event(), threading.Event()
    seen: list[set[str]] = []  # the folder's entries at each flush: whatever is in it when flushed is durable
    real_sync = flush.sync

    def sync(fd: int) -> None:
        seen.append(set(os.listdir(f"/proc/self/fd/{fd}")))
        if not held.is_set():
            held.set()
            release.wait(10)
        real_sync(fd)

    flush.sync = sync
    client = running.client()
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(client.put, "/api/files/first.bin", content=SMALL)
        assert held.wait(10)
        others = [pool.submit(client.put, f"/api/files/{n}.bin", content=SMALL) for n in range(7)]
        assert wait_for(lambda: flush.waiting == 7)  # the other uploads queue behind the held flush
        assert not first.done() and not any(other.done() for other in others)  # nobody answered before the flush
        groups, requests = flush.groups, flush.requests
        release.set()
        answers = [future.result(10) for future in (first, *others)]
    assert all(answer.status_code == 201 for answer in answers)
    assert (flush.groups - groups, flush.requests - requests) == (2, 8)  # the held one, then the seven in one
    assert len(seen) == 2  # one fsync for the seven, as they share a folder
    for answer in answers:
        assert answer.json()["id"] in set().union(*seen)  # each was in its folder when the folder was flushed
    if in_order:
        assert counted_syncs == {"fsync": 2, "write_out": 8, "fdatasync": 0}
    else:
        assert counted_syncs == {"fsync": 2 + 8, "write_out": 0, "fdatasync": 0}


async def test_full_commits_each_change_before_it_returns(tmp_path):
    storage = LocalStorage(tmp_path, "full")
    await storage.open()
    try:
        synced = []
        real_sync = storage.layout.flush.sync
        storage.layout.flush.sync = lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_sync(fd))
        await _put(storage, "files/o/a", b"x")
        await storage.update_metadata("files/o/a", {"n": 1})
        await storage.move("files/o/a", "temp/o/a")
        assert await storage.delete("temp/o/a")
        folder = str(storage.layout.objects)
        assert synced == [f"{folder}/files/o", f"{folder}/files/o", f"{folder}/temp/o", f"{folder}/temp/o"]
    finally:
        await storage.close()


def test_a_group_runs_each_flush_once_and_reports_its_error_to_every_member(tmp_path):
    flush = group_commit.GroupCommit()
    calls = []

    def failing(fd: int) -> None:
        calls.append(fd)
        raise OSError(5, "Input/output error")

    flush.sync = failing
    results = []

    def commit() -> None:
        try:
            flush.commit(tmp_path)
        except Exception as error:
            results.append(error)

    threads = [threading.Thread(target=commit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 4 and all("Input/output error" in str(error) for error in results)
    assert len(calls) == flush.groups <= 4 and flush.requests == 4


async def test_full_keeps_working_where_folders_stand_in_for_xattrs(tmp_path):
    """A file system without user xattrs gets the older layout (covered by the contract tests too)."""
    storage = LocalStorage(tmp_path, "full")
    storage.layout.xattrs = False
    await storage.open()
    try:
        await _put(storage, "files/o/a", b"kept", {"k": 1})
        assert (storage.layout.objects / "files/o/a/meta.json").exists()
        assert await _read(storage, "files/o/a") == b"kept"
        assert await asyncio.wait_for(storage.delete("files/o/a"), 5)
    finally:
        await storage.close()


@pytest.mark.parametrize("in_order", [True, False])
async def test_a_record_waits_for_no_commit_of_its_own_where_the_next_one_covers_it(tmp_path, in_order):
    """``record_writer``: a ``lazy`` record (an Idempotency-Key's answer) is never committed on its own; an
    ``ordered`` one (its mark) only where a later commit would not make it durable too (not ext4 or xfs)."""
    storage = LocalStorage(tmp_path, "full")
    storage.layout.flush.in_order = in_order
    await storage.open()
    try:
        commits = storage.layout.flush.requests
        for flush in ("lazy", "ordered"):
            async with record_writer(storage, flush) as writer:
                await writer.commit(f"idempotency/o/{flush}", {"state": flush})
            assert (await storage.stat(f"idempotency/o/{flush}")).metadata == {"state": flush}
        assert storage.layout.flush.requests - commits == (0 if in_order else 1)
        await _put(storage, "files/o/work", b"the work")  # an ordinary object: committed, as ever
        assert storage.layout.flush.requests - commits == (1 if in_order else 2)
    finally:
        await storage.close()


def _fake_machine(root, folder, file_system: str, ext4_options: str) -> None:
    """``/proc`` and ``/sys`` under ``root`` as they would describe ``folder``'s device mounted as ``file_system``."""
    device = os.stat(folder).st_dev
    number = f"{os.major(device)}:{os.minor(device)}"
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(f"1 0 0:1 / /proc rw - proc proc rw\n"
                                              f"25 1 {number} / / rw,relatime - {file_system} /dev/vdz rw\n")
    (root / "sys/dev/block").mkdir(parents=True)
    (root / "sys/dev/block" / number).symlink_to("../../devices/virtio1/block/vdz")
    (root / "proc/fs/ext4/vdz").mkdir(parents=True)
    (root / "proc/fs/ext4/vdz/options").write_text(ext4_options.replace(" ", "\n"))


@pytest.mark.parametrize(("file_system", "ext4_options", "expected"), [
    ("ext4", "rw delalloc data=ordered barrier", True),
    ("ext4", "rw delalloc data=writeback barrier", True),  # metadata is still journaled in order
    ("ext4", "rw delalloc nojournal_checksum barrier", False),  # made without a journal: no data mode
    ("xfs", "", True),
    ("tmpfs", "", False),
])
def test_only_a_journaled_file_system_counts_as_logging_in_order(tmp_path, file_system, ext4_options, expected):
    folder = tmp_path / "objects"
    folder.mkdir()
    _fake_machine(tmp_path / "root", folder, file_system, ext4_options)
    assert group_commit.logs_in_order(folder, tmp_path / "root") is expected


def test_this_machines_file_system_is_judged_by_its_journal(tmp_path):
    """On the real machine, against another sign of a journal: ext4's journals each have a folder in
    ``/proc/fs/jbd2`` (``<device>-8``)."""
    device = os.stat(tmp_path).st_dev
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        kind = next(line.split(" - ")[1].split()[0] for line in mounts
                    if line.split()[2] == f"{os.major(device)}:{os.minor(device)}")
    name = os.path.basename(os.readlink(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}"))
    journals = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
    journaled = kind == "xfs" or (kind == "ext4" and any(entry.startswith(f"{name}-") for entry in journals))
    assert group_commit.logs_in_order(tmp_path) is journaled
