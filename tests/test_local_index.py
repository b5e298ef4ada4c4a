"""The local storage's index: listings, expiry and totals from SQLite, and the disk still the truth.

The index may be deleted or left behind by a crash at any point; these tests do both and check that listings
come back right: after a restart, a sweep, or ``upload-service reindex``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from upload_service.builtin.local_storage import LocalStorage
from upload_service.builtin.local_storage.index import SCHEMA
from upload_service.builtin.local_storage.layout import ATTRIBUTE

from .faults import wait_for


@pytest.fixture
async def storage(tmp_path):
    opened = LocalStorage(tmp_path)
    await opened.open()
    await until_indexed(opened)
    yield opened
    await opened.close()


@pytest.fixture
async def relaxed(tmp_path):
    """A storage that does not flush (quicker to fill)."""
    opened = LocalStorage(tmp_path, "relaxed")
    await opened.open()
    await until_indexed(opened)
    yield opened
    await opened.close()


async def until_indexed(storage: LocalStorage) -> None:
    """Wait for the background rebuild a fresh index starts."""
    for _ in range(500):
        if await storage.threads.run(storage.index.usable):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the index was not built")


async def put(storage: LocalStorage, key: str, data: bytes = b"x", metadata: dict | None = None) -> None:
    async with storage.writer() as writer:
        await writer.write(data)
        await writer.commit(key, metadata or {})


async def keys(storage: LocalStorage, prefix: str, **options) -> list[str]:
    return [stored.key for stored in await storage.list(prefix, **options)]


def on_disk(storage: LocalStorage, prefix: str) -> list[str]:
    return [stored.key for stored in storage._walk_sync(prefix, None, None)]


def indexed(storage: LocalStorage) -> list[str]:
    with sqlite3.connect(storage.index.path) as db:
        return [key for (key,) in db.execute("SELECT key FROM objects ORDER BY key")]


async def test_every_change_reaches_the_index(storage):
    for name in ("b", "a", "c"):
        await put(storage, f"files/o/{name}", name.encode() * 3, {"n": name})
    await put(storage, "temp/o/t", b"tt")
    await storage.move("temp/o/t", "files/o/t", {"moved": True})
    await storage.delete("files/o/b")
    await storage.update_metadata("files/o/a", {"n": "A"})
    assert indexed(storage) == ["files/o/a", "files/o/c", "files/o/t"]
    listed = await storage.list("files/o/")
    assert [(s.key, s.metadata, s.size) for s in listed] == [
        ("files/o/a", {"n": "A"}, 3), ("files/o/c", {"n": "c"}, 3), ("files/o/t", {"moved": True}, 2)]
    assert listed == [await storage.stat(s.key) for s in listed]
    assert await keys(storage, "files/o/", start_after="files/o/a", limit=1) == ["files/o/c"]
    assert await storage.totals("files/o/") == (3, 8)


async def test_a_refused_commit_leaves_the_standing_row(storage):
    await put(storage, "usage/o", b"", {"v": 1})
    with pytest.raises(Exception, match="usage/o"):
        await put(storage, "usage/o", b"", {"v": 2})
    assert [s.metadata for s in await storage.list("usage/")] == [{"v": 1}]
    assert storage.index.journal.open_changes == 0


async def test_expired_objects_come_from_the_expiry_index(storage):
    now = datetime.now(UTC)
    for name, delta in (("old", -60), ("older", -3600), ("new", 3600)):
        await put(storage, f"temp/o/{name}", metadata={"expires_at": (now + timedelta(seconds=delta)).isoformat()})
    await put(storage, "files/o/kept", metadata={"expires_at": None})
    assert [s.key for s in await storage.list_expired("temp/", now)] == ["temp/o/old", "temp/o/older"]
    assert [s.key for s in await storage.list_expired("temp/", now, start_after="temp/o/old")] == ["temp/o/older"]
    queried = []
    for db, _ in storage.index._pool:
        db.set_trace_callback(queried.append)
    await storage.list_expired("temp/", now)
    with sqlite3.connect(storage.index.path) as db:
        plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {queried[-1]}"))
    assert "USING INDEX objects_expiry" in plan, plan


async def test_a_deleted_index_is_made_again_and_reindex_fills_it(storage, tmp_path):
    for number in range(5):
        await put(storage, f"files/o/{number}")
    for path in storage.index.folder.glob("objects.sqlite3*"):
        path.unlink()
    assert await keys(storage, "files/o/") == [f"files/o/{n}" for n in range(5)]  # the disk, meanwhile
    assert await storage.reindex() == 5
    assert indexed(storage) == [f"files/o/{n}" for n in range(5)]
    await put(storage, "files/o/5")
    assert await keys(storage, "files/o/", start_after="files/o/3") == ["files/o/4", "files/o/5"]


async def test_a_copy_without_xattrs_is_named_in_a_warning_when_indexed(storage, caplog):
    """Objects keep their records in an xattr: a backup restored without xattrs (tar without --xattrs) leaves
    files the storage cannot describe, and the operator is told so instead of finding an empty list."""
    if not storage.layout.xattrs:
        pytest.skip("this file system keeps no user xattrs: objects are folders with meta.json")
    for name in ("a", "b", "c"):
        await put(storage, f"files/o/{name}")
    for name in ("a", "b"):
        os.removexattr(storage.layout.object_path(f"files/o/{name}"), ATTRIBUTE)

    caplog.set_level(logging.WARNING, logger="upload_service.local_storage")
    assert await storage.reindex() == 1

    assert await keys(storage, "files/o/") == ["files/o/c"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("2 files under ") and "rsync -X" in warnings[0]


async def test_an_index_of_another_schema_is_rebuilt_on_start(tmp_path):
    first = LocalStorage(tmp_path)
    await first.open()
    await put(first, "files/o/a")
    await first.close()
    with sqlite3.connect(first.index.path) as db:
        db.execute("UPDATE state SET value = ? WHERE name = 'schema'", (SCHEMA - 1,))
        db.execute("DELETE FROM objects")
    second = LocalStorage(tmp_path)
    await second.open()
    try:
        await until_indexed(second)
        assert indexed(second) == ["files/o/a"]
    finally:
        await second.close()


async def test_a_writer_of_an_earlier_boot_that_never_closed_makes_a_rebuild(tmp_path):
    first = LocalStorage(tmp_path)
    await first.open()
    await until_indexed(first)
    await put(first, "files/o/a")
    await first.threads.run(first.owner.release)  # as if the machine lost power: its writer row stays
    with sqlite3.connect(first.index.path) as db:
        db.execute("UPDATE writers SET boot = 'an-earlier-boot'")
        db.execute("DELETE FROM objects")  # what a power loss may take from an unsynced WAL
    second = LocalStorage(tmp_path)
    await second.open()
    try:
        await until_indexed(second)
        assert wait_for(lambda: indexed(second) == ["files/o/a"])
    finally:
        await second.close()
        await first.threads.close()


async def test_two_workers_see_each_others_changes_during_a_rebuild(tmp_path):
    one, two = LocalStorage(tmp_path), LocalStorage(tmp_path)
    await one.open()
    await two.open()
    try:
        await asyncio.gather(*(put(one if n % 2 else two, f"files/o/{n:03d}") for n in range(200)))
        rebuild = asyncio.ensure_future(one.reindex())
        await asyncio.gather(*(two.delete(f"files/o/{n:03d}") for n in range(0, 200, 3)),
                             *(put(two, f"files/o/new{n}") for n in range(20)))
        await rebuild
        expected = on_disk(one, "files/o/")
        assert len(expected) == 200 - 67 + 20
        assert await keys(one, "files/o/") == await keys(two, "files/o/") == expected == indexed(one)
    finally:
        await one.close()
        await two.close()


async def test_the_pending_journal_stays_small_and_keeps_only_what_did_not_settle(storage, monkeypatch):
    journal = storage.index.journal
    monkeypatch.setattr("upload_service.builtin.local_storage.pending.ROTATE_BYTES", 200)
    for number in range(12):  # about 40 bytes a note: several journals, each removed once its changes settled
        await put(storage, f"files/o/k{number}")
    assert journal.open_changes == 0
    assert len(list(journal.folder.iterdir())) == 1  # the current one
    failing = storage.index.write

    def settle_fails(work):
        if getattr(work, "func", None) == storage.index.record:
            raise sqlite3.OperationalError("disk I/O error")
        return failing(work)

    monkeypatch.setattr(storage.index, "write", settle_fails)
    await put(storage, "files/o/unsettled")
    assert journal.open_changes == 1
    monkeypatch.undo()
    assert "files/o/unsettled" not in await keys(storage, "files/o/")
    await storage.sweep_staging()  # this storage's own sweep settles what it could not
    assert "files/o/unsettled" in await keys(storage, "files/o/")
    await storage.close()  # the journal with the unsettled note stays for the next heal
    reopened = LocalStorage(storage.layout.root)
    await reopened.open()
    try:
        assert "files/o/unsettled" in await keys(reopened, "files/o/")
        assert list(journal.folder.iterdir()) == []  # healed, and its writer is gone
    finally:
        await reopened.close()
        await storage.open()  # for the fixture's close


CRASH = textwrap.dedent("""
    import asyncio, os, signal, sys
    from pathlib import Path
    from upload_service.builtin.local_storage import LocalStorage

    async def main():
        storage = LocalStorage(Path(sys.argv[1]))
        await storage.open()
        storage.index.fault = lambda where: os.kill(os.getpid(), signal.SIGKILL)  # after the rename, before settle
        async with storage.writer() as writer:
            await writer.write(b"survives")
            await writer.commit("files/o/crashed", {})

    asyncio.run(main())
""")


def crash_between_commit_and_index(root: Path) -> None:
    process = subprocess.run([sys.executable, "-c", CRASH, str(root)], capture_output=True, text=True)
    assert process.returncode == -9, process.stderr
    assert (root / "objects" / "files" / "o" / "crashed").read_bytes() == b"survives"


def damage(path: Path, how: str) -> None:
    """Damage the index file at ``path`` (its WAL checkpointed into it first) the way ``how`` says."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    if how == "garbage":
        path.write_bytes(os.urandom(size))
    elif how == "header":
        with open(path, "r+b") as file:
            file.write(b"this is no database at all!")
    elif how == "truncated":
        os.truncate(path, size // 2)
    elif how == "pages":  # every page but the first (the schema's) overwritten
        with open(path, "r+b") as file:
            file.seek(4096)
            file.write(os.urandom(size - 4096))
    else:  # the WAL of another database (valid in itself: SQLite applies it, over pages it does not match)
        other = path.with_name("other.sqlite3")
        with contextlib.closing(sqlite3.connect(other, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("CREATE TABLE unrelated (value)")
            db.executemany("INSERT INTO unrelated VALUES (?)", [(os.urandom(100),) for _ in range(100)])
            shutil.copyfile(f"{other}-wal", f"{path}-wal")
        other.unlink()




async def fill(storage: LocalStorage, count: int) -> None:
    """``count`` objects of files/o/, with metadata enough to fill a few pages of the index each."""
    await asyncio.gather(*(put(storage, f"files/o/{n:03d}", metadata={"pad": "x" * 1000}) for n in range(count)))


async def lists_right_and_heals(storage: LocalStorage, expected: list[str]) -> None:
    """Every read and change works on a damaged index, and the index comes back (complete, and right)."""
    assert await keys(storage, "files/o/") == expected
    assert await keys(storage, "files/o/", start_after=expected[9], limit=3) == expected[10:13]
    await put(storage, "files/o/new", b"new")
    await storage.delete(expected[0])
    expected = [*expected[1:], "files/o/new"]
    assert await keys(storage, "files/o/") == expected
    assert await storage.totals("files/o/") == (len(expected), len(expected) + 2)
    await until_indexed(storage)
    assert indexed(storage) == expected == await keys(storage, "files/o/")


@pytest.mark.parametrize("how", ["header", "truncated", "pages"])
async def test_an_index_damaged_under_a_running_storage_is_set_aside_and_rebuilt(relaxed, how, caplog):
    storage = relaxed
    await fill(storage, 40)
    expected = on_disk(storage, "files/o/")
    damage(storage.index.path, how)
    caplog.set_level(logging.WARNING, logger="upload_service.local_storage")
    await lists_right_and_heals(storage, expected)
    assert any("is unreadable" in record.getMessage() for record in caplog.records)
    assert (storage.index.folder / "objects.sqlite3.corrupt").exists()


@pytest.mark.parametrize("how", ["garbage", "truncated", "wal"])
async def test_an_index_damaged_while_stopped_is_set_aside_and_rebuilt_at_start(tmp_path, how):
    first = LocalStorage(tmp_path, "relaxed")
    await first.open()
    await until_indexed(first)
    await fill(first, 40)
    await first.close()
    damage(first.index.path, how)
    second = LocalStorage(tmp_path, "relaxed")
    await second.open()
    try:
        await lists_right_and_heals(second, on_disk(second, "files/o/"))
        assert (second.index.folder / "objects.sqlite3.corrupt").exists()
    finally:
        await second.close()


async def test_the_sweep_removes_old_record_files_that_no_object_names(relaxed):
    """Records over 3,000 bytes live in ``.records``; a refused commit, or a crash between a delete's two steps,
    leaves one that nothing names. The sweep removes those once old, and spares every other: of an object, of a
    change not yet settled in the index, of a staged file being committed, and a young one."""
    storage, layout = relaxed, relaxed.layout
    if not layout.xattrs:
        pytest.skip("this file system keeps no user xattrs: objects are folders with meta.json")
    large = {"pad": "x" * 4000}
    for name in ("kept", "changing", "dup"):
        await put(storage, f"files/o/{name}", metadata={**large, "name": name})
    named = {key: json.loads(os.getxattr(layout.object_path(f"files/o/{key}"), ATTRIBUTE))["record"]
             for key in ("kept", "changing", "dup")}
    with pytest.raises(Exception, match="dup"):  # refused after its record was written
        await put(storage, "files/o/dup", metadata={**large, "name": "second"})
    crashed = layout.records / "crashed-between-unlinks.json"  # a deleted object's, as a crash leaves it
    shutil.copyfile(layout.records / named["kept"], crashed)
    staged = layout.records / "staged.json"
    shutil.copyfile(layout.records / named["kept"], staged)
    staging = layout.new_staging()
    staging.write_bytes(b"x")
    os.setxattr(staging, ATTRIBUTE, json.dumps({"record": staged.name}).encode())
    storage.index.journal.note(("files/o/changing",))  # renamed into place, not yet settled: its row not there
    with sqlite3.connect(storage.index.path) as db:
        db.execute("DELETE FROM objects WHERE key = 'files/o/changing'")
    before = {path.name for path in layout.records.iterdir()}
    young = layout.records / "young.json"
    shutil.copyfile(crashed, young)
    old = time.time() - 2 * 3600
    for path in layout.records.iterdir():
        if path != young:
            os.utime(path, (old, old))

    await storage.sweep_staging()

    left = {path.name for path in layout.records.iterdir()}
    orphans = before - set(named.values()) - {staged.name}
    assert len(orphans) == 2 and crashed.name in orphans  # the refused commit's and the crashed delete's
    assert left == before - orphans | {young.name}
    assert (await storage.stat("files/o/kept")).metadata["name"] == "kept"
    assert (await storage.stat("files/o/dup")).metadata["name"] == "dup"


@pytest.mark.process
async def test_a_crash_between_commit_and_index_heals_at_the_next_sweep(storage, tmp_path):
    crash_between_commit_and_index(tmp_path)
    assert await keys(storage, "files/o/") == []  # committed, not yet in the index
    await storage.sweep_staging()
    assert await keys(storage, "files/o/") == ["files/o/crashed"]


@pytest.mark.process
async def test_a_crash_between_commit_and_index_heals_at_the_next_start(tmp_path):
    first = LocalStorage(tmp_path)
    await first.open()
    await until_indexed(first)
    await first.close()
    crash_between_commit_and_index(tmp_path)
    restarted = LocalStorage(tmp_path)
    await restarted.open()
    try:
        assert await keys(restarted, "files/o/") == ["files/o/crashed"]
    finally:
        await restarted.close()


@pytest.mark.local_storage
@pytest.mark.process
def test_a_running_service_lists_right_when_its_index_is_deleted_or_damaged_and_gets_it_back(make_server):
    server = make_server(workers="2")
    clients = [server.client() for _ in range(4)]
    ids = {clients[n % 4].put(f"/api/files/f{n}.txt", content=b"%d" % n).json()["id"] for n in range(30)}

    def listed() -> set[str]:
        found, cursor = [], None
        while True:
            page = server.client().get("/api/files", params={"limit": 7, **({"cursor": cursor} if cursor else {})})
            found += [file["id"] for file in page.json()["files"]]
            if not (cursor := page.json()["next_cursor"]):
                assert len(found) == len(set(found))
                return set(found)

    assert listed() == ids  # pages through both workers
    for path in (server.upload_dir / ".index").glob("objects.sqlite3*"):
        path.unlink()
    assert listed() == ids  # from the disk until the index is back
    result = subprocess.run([sys.executable, "-m", "upload_service.cli", "reindex"], env=server.env,
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == {"objects": 30}
    assert listed() == ids
    ids.add(clients[0].put("/api/files/after.txt", content=b"after").json()["id"])
    assert listed() == ids
    path = server.upload_dir / ".index" / "objects.sqlite3"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM objects WHERE area = 'files'").fetchone() == (31,)

    damage(path, "garbage")  # under both workers: the first to read it sets it aside and rebuilds it
    assert listed() == ids
    ids.add(clients[1].put("/api/files/damaged.txt", content=b"damaged").json()["id"])
    gone = sorted(ids)[0]
    assert clients[2].delete(f"/api/files/{gone}").status_code == 204
    ids.remove(gone)
    assert listed() == ids
    assert wait_for(lambda: indexed_files(path) == len(ids))
    assert (path.parent / "objects.sqlite3.corrupt").exists()


def indexed_files(path: Path) -> int | None:
    """How many files a complete index at ``path`` lists (None while it is not complete or readable)."""
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            if db.execute("SELECT value FROM state WHERE name = 'complete'").fetchone() != (1,):
                return None
            return db.execute("SELECT count(*) FROM objects WHERE area = 'files'").fetchone()[0]
    except sqlite3.Error:
        return None
