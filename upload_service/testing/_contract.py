"""``StorageContract``: every rule of ``upload_service.storage.Storage`` and ``ObjectWriter`` as a test.

A backend's test module subclasses it and provides a fixture named ``storage``, an opened storage object::

    from upload_service.testing import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        async def storage(self):          # pytest_asyncio.fixture in pytest-asyncio's strict mode
            storage = MyStorage(...)
            await storage.open()
            yield storage
            await storage.close()

Tests keep to keys of their own (random owners), so the fixture may share one storage between tests.
They are marked ``pytest.mark.asyncio`` and need pytest-asyncio, in its strict or auto mode.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from upload_service.storage import ObjectExists, ObjectNotFound, Storage, StoredObject

MiB = 1024 * 1024
BAD_KEYS = ["", "/", "../etc/passwd", "files/o/../x", "/files/o/a", "files/o/a/", "files//a", "files/o/a b",
            "files/o/.hidden", "files/o/a.txt", "files\\o\\a", "files/o/\u00e9", "files/o/" + "a" * 129]
BAD_PREFIXES = ["", "files", "files/o", "/", "../", "files/../", "/files/", "files//", "files/o.x/"]


def owner() -> str:
    """An owner folder as the core makes them (32 hex characters), new for each test."""
    return secrets.token_hex(16)


def file_id() -> str:
    return secrets.token_hex(10)


def key(area: str = "files") -> str:
    return f"{area}/{owner()}/{file_id()}"


async def put(storage: Storage, key: str, data: bytes, metadata: dict[str, Any] | None = None,
              piece: int = 64 * 1024) -> StoredObject:
    """Write ``data`` in pieces of ``piece`` bytes and commit it."""
    async with storage.writer() as writer:
        for start in range(0, len(data), piece):
            await writer.write(data[start:start + piece])
        return await writer.commit(key, metadata or {})


async def read(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key, start, end)])


async def stat(storage: Storage, key: str) -> StoredObject:
    """``storage.stat(key)`` of an object that must be there."""
    found = await storage.stat(key)
    assert found is not None, f"{key} is missing"
    return found


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def refused(what: str, call: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """``call(*args)`` must raise ``ValueError`` (a key that ``check_key`` refuses)."""
    try:
        await call(*args)
    except ValueError:
        return
    raise AssertionError(f"{what} was not refused with ValueError")


class BackendFixtures:
    """What both contracts may be given beside ``storage``."""

    @pytest.fixture
    def second_worker(self) -> Storage | None:
        """Another storage object on the same data, as another worker or instance would open it. Override it for
        a backend that workers share; None (the default) skips the tests of several workers."""
        return None


@pytest.mark.asyncio
class StorageContract(BackendFixtures):
    """Conformance tests of a ``Storage`` (see the module docstring). ``large`` is a size beyond the backend's
    buffers and parts; a subclass may raise it (S3's first multipart part is 8 MiB). ``leftovers`` and the
    ``second_worker`` fixture are optional."""

    large = 3 * MiB

    async def leftovers(self, storage: Storage) -> Any:
        """What aborted or refused writes could leave behind (staging files, unfinished multipart uploads), as
        anything comparable. Override it where the test can see them; None (the default) is not checked."""
        return None

    # -- writing ------------------------------------------------------------------------------------

    async def test_commit_makes_the_object_visible_whole(self, storage: Storage) -> None:
        target, data = key(), b"first chunk|second|" + bytes(range(256)) * 40
        async with storage.writer() as writer:
            for piece in (data[:12], b"", data[12:19], data[19:]):
                await writer.write(piece)
            assert await storage.stat(target) is None  # nothing is visible before commit
            await writer.finish()
            assert (writer.size, writer.sha256) == (len(data), sha256(data))
            stored = await writer.commit(target, {"filename": "a.bin"})
        assert (stored.key, stored.size, stored.sha256, stored.metadata) == (target, len(data), sha256(data),
                                                                             {"filename": "a.bin"})
        assert stored.created_at.tzinfo is not None
        assert abs(datetime.now(UTC) - stored.created_at) < timedelta(minutes=5)
        assert await storage.stat(target) == stored
        assert await read(storage, target) == data

    async def test_commit_without_finish_finishes_first(self, storage: Storage) -> None:
        target, data = key(), os.urandom(100_000)
        async with storage.writer() as writer:
            await writer.write(data)
            stored = await writer.commit(target, {})
        assert (stored.size, stored.sha256) == (len(data), sha256(data))
        assert await read(storage, target) == data

    async def test_an_object_without_bytes(self, storage: Storage) -> None:
        """The usage ledger is such an object: metadata only."""
        target = f"usage/{owner()}"
        async with storage.writer() as writer:
            stored = await writer.commit(target, {"bytes": 0, "files": 0})
        assert (stored.size, stored.sha256) == (0, sha256(b""))
        assert await read(storage, target) == b""
        assert (await stat(storage, target)).metadata == {"bytes": 0, "files": 0}

    async def test_a_large_object_in_uneven_writes(self, storage: Storage) -> None:
        target, data = key(), os.urandom(self.large + 12345)
        stored = await put(storage, target, data, piece=700_001)
        assert (stored.size, stored.sha256) == (len(data), sha256(data))
        assert await read(storage, target) == data
        middle = self.large // 2
        assert await read(storage, target, middle - 5, middle + 5) == data[middle - 5:middle + 5]
        assert await read(storage, target, len(data) - 3) == data[-3:]

    async def test_leaving_the_block_without_commit_leaves_nothing(self, storage: Storage) -> None:
        before = await self.leftovers(storage)
        async with storage.writer() as writer:
            await writer.write(os.urandom(self.large))
            await writer.finish()
        with pytest.raises(RuntimeError, match="the request failed"):
            async with storage.writer() as writer:
                await writer.write(b"partial")
                raise RuntimeError("the request failed")
        async with storage.writer() as writer:
            await writer.write(b"aborted")
            await writer.abort()
            await writer.abort()  # safe twice
        assert await self.leftovers(storage) == before

    async def test_commit_refuses_an_existing_key(self, storage: Storage) -> None:
        target = key()
        first = await put(storage, target, b"first", {"n": 1})
        before = await self.leftovers(storage)
        with pytest.raises(ObjectExists):
            await put(storage, target, os.urandom(self.large), {"n": 2})
        assert await self.leftovers(storage) == before  # the refused writer's bytes are gone
        assert await storage.stat(target) == first
        assert await read(storage, target) == b"first"

    async def test_racing_commits_of_one_key_have_one_winner(self, storage: Storage) -> None:
        target = key()

        async def commit(data: bytes) -> StoredObject:
            async with storage.writer() as writer:
                await writer.write(data)
                await writer.finish()
                return await writer.commit(target, {"data": data.decode()})

        outcomes = await asyncio.gather(*(commit(f"writer {n}".encode()) for n in range(4)), return_exceptions=True)
        winners = [outcome for outcome in outcomes if isinstance(outcome, StoredObject)]
        assert len(winners) == 1, outcomes
        assert all(isinstance(outcome, ObjectExists) for outcome in outcomes if outcome not in winners), outcomes
        assert await read(storage, target) == winners[0].metadata["data"].encode()

    async def test_several_writers_at_once(self, storage: Storage) -> None:
        """A batch upload stages every file before it commits any."""
        keys, datas = [key(), key()], [os.urandom(300_000), os.urandom(200_000)]
        async with storage.writer() as first, storage.writer() as second:
            for start in range(0, 300_000, 50_000):
                await first.write(datas[0][start:start + 50_000])
                await second.write(datas[1][start:start + 50_000])
            await first.finish()
            await second.finish()
            await second.commit(keys[1], {})
            await first.commit(keys[0], {})
        assert [await read(storage, k) for k in keys] == datas

    async def test_metadata_is_kept_as_given(self, storage: Storage) -> None:
        target = key()
        metadata: dict[str, Any] = {"filename": "r\u00e9sum\u00e9 \u2603.txt", "n": 3, "ok": True, "none": None,
                    "nested": {"list": [1, "two", {"three": 3.5}]}}
        expected = copy.deepcopy(metadata)
        assert (await put(storage, target, b"x", metadata)).metadata == expected
        metadata["nested"]["list"].append("changed after commit")  # the backend keeps what it was given
        assert (await stat(storage, target)).metadata == expected

    # -- reading ------------------------------------------------------------------------------------

    async def test_reads_of_ranges(self, storage: Storage) -> None:
        """``end`` is exclusive; past the end reads to the end; an empty or out-of-bounds range reads nothing."""
        target, data = key(), b"0123456789"
        await put(storage, target, data)
        cases = {(0, None): data, (3, None): b"3456789", (3, 7): b"3456", (0, 10): data, (0, 0): b"",
                 (5, 5): b"", (7, 100): b"789", (10, None): b"", (12, 20): b"", (9, 10): b"9"}
        for (start, end), expected in cases.items():
            assert await read(storage, target, start, end) == expected, (start, end)

    async def test_a_read_yields_bytes(self, storage: Storage) -> None:
        target = key()
        await put(storage, target, os.urandom(600_000))
        assert {type(chunk) async for chunk in storage.read(target)} == {bytes}

    async def test_reading_a_missing_key_raises_object_not_found(self, storage: Storage) -> None:
        """At the latest when the first chunk is asked for: the core reads it before it answers (a 404)."""
        with pytest.raises(ObjectNotFound):
            await read(storage, key())
        target = key()
        await put(storage, target, b"gone soon")
        await storage.delete(target)
        with pytest.raises(ObjectNotFound):
            await read(storage, target, 2, 5)

    async def test_a_read_that_started_finishes_when_the_object_is_deleted(self, storage: Storage) -> None:
        target, data = key(), os.urandom(self.large)
        await put(storage, target, data, piece=MiB)
        chunks = storage.read(target)
        first = await anext(chunks)
        assert await storage.delete(target) is True
        rest = [chunk async for chunk in chunks]
        assert first + b"".join(rest) == data
        assert await storage.stat(target) is None

    # -- stat and delete ----------------------------------------------------------------------------

    async def test_stat_of_a_missing_key_is_none(self, storage: Storage) -> None:
        assert await storage.stat(key()) is None

    async def test_delete_says_whether_the_object_was_there(self, storage: Storage) -> None:
        target = key()
        await put(storage, target, b"bytes", {"k": "v"})
        assert await storage.delete(target) is True
        assert await storage.stat(target) is None
        assert await storage.delete(target) is False
        assert await storage.delete(key()) is False
        await put(storage, target, b"again")  # the key is free again
        assert await read(storage, target) == b"again"

    async def test_racing_deletes_have_one_winner(self, storage: Storage) -> None:
        """The core takes a deleted file out of its owner's quota when ``delete`` says True: once."""
        for _ in range(3):
            target = key()
            await put(storage, target, b"bytes")
            outcomes = await asyncio.gather(*(storage.delete(target) for _ in range(3)))
            assert sorted(outcomes) == [False, False, True]

    # -- listing ------------------------------------------------------------------------------------

    async def test_list_is_in_ascending_key_order_at_any_depth(self, storage: Storage) -> None:
        """Whole keys compare as strings: ``temp/a-b/x`` before ``temp/a/x`` before ``temp/a0/x``."""
        root = f"temp/{owner()}"
        names = ["a/x", "a-b/x", "a0/x", "a_b/x", "Q/x", "a/x-1", "a/x_1", "a/x0", "b/c/d", "z9"]
        keys = [f"{root}/{name}" for name in names]
        for target in reversed(keys):
            await put(storage, target, target.encode())
        listed = await storage.list(f"{root}/")
        assert [stored.key for stored in listed] == sorted(keys)
        assert listed == [await storage.stat(stored.key) for stored in listed]

    async def test_list_prefix_is_a_folder(self, storage: Storage) -> None:
        base = f"files/{owner()}"
        await put(storage, f"{base}/ab/1", b"x")
        await put(storage, f"{base}/abc/1", b"y")
        assert [stored.key for stored in await storage.list(f"{base}/ab/")] == [f"{base}/ab/1"]
        assert await storage.list(f"files/{owner()}/") == []

    async def test_list_after_a_key_and_up_to_a_limit(self, storage: Storage) -> None:
        base = f"files/{owner()}"
        keys = [f"{base}/k{n}" for n in range(0, 10, 2)]
        for target in keys:
            await put(storage, target, b"")
        prefix = f"{base}/"
        assert [s.key for s in await storage.list(prefix, start_after=keys[1])] == keys[2:]  # strictly after
        assert [s.key for s in await storage.list(prefix, start_after=f"{base}/k3")] == keys[2:]  # need not exist
        assert [s.key for s in await storage.list(prefix, start_after=f"{base}/k9")] == []
        assert [s.key for s in await storage.list(prefix, limit=2)] == keys[:2]
        assert [s.key for s in await storage.list(prefix, start_after=keys[2], limit=1)] == keys[3:4]
        pages, after = [], None
        while page := await storage.list(prefix, start_after=after, limit=2):
            pages.append([stored.key for stored in page])
            after = page[-1].key
        assert pages == [keys[:2], keys[2:4], keys[4:]]

    async def test_list_expired_lists_what_expired_by_a_moment(self, storage: Storage) -> None:
        """Optional (``list_expired``): as ``list``, only objects whose metadata's ``expires_at`` is past."""
        finder = getattr(storage, "list_expired", None)
        if finder is None:
            pytest.skip("no list_expired: the sweep reads every temporary upload")
        base, now = f"temp/{owner()}", datetime.now(UTC)
        expiries = {"a": now - timedelta(hours=1), "b": now - timedelta(seconds=1), "c": now + timedelta(hours=1),
                    "d": None}
        for name, expiry in expiries.items():
            await put(storage, f"{base}/{name}", b"", {"expires_at": expiry and expiry.isoformat()})
        await put(storage, f"{base}/e", b"", {})

        async def names(**options: Any) -> list[str]:
            return [stored.key.rsplit("/", 1)[1] for stored in await finder(f"{base}/", now, **options)]

        assert await names() == ["a", "b"]
        assert await names(start_after=f"{base}/a") == ["b"]
        assert await names(limit=1) == ["a"]
        await storage.update_metadata(f"{base}/c", {"expires_at": (now - timedelta(minutes=1)).isoformat()})
        await storage.delete(f"{base}/a")
        assert await names() == ["b", "c"]
        assert (await finder(f"{base}/", now))[0] == await storage.stat(f"{base}/b")

    async def test_totals_count_the_objects_and_bytes_under_a_prefix(self, storage: Storage) -> None:
        """Optional (``totals``): what an owner's usage is recounted from."""
        totals = getattr(storage, "totals", None)
        if totals is None:
            pytest.skip("no totals: usage is recounted by listing")
        base = f"files/{owner()}"
        await put(storage, f"{base}/a", b"12345")
        await put(storage, f"{base}/b", b"")
        await put(storage, f"{base}0/c", b"not under the prefix")
        assert await totals(f"{base}/") == (2, 5)
        await storage.move(f"{base}/a", f"temp/{base[6:]}/a")
        assert await totals(f"{base}/") == (1, 0)
        assert await totals(f"temp/{base[6:]}/") == (1, 5)

    # -- moving and metadata ------------------------------------------------------------------------

    async def test_move_renames_and_keeps_the_bytes(self, storage: Storage) -> None:
        src, dst, other = key("temp"), key(), key()
        stored = await put(storage, src, b"moved bytes", {"a": 1})
        moved = await storage.move(src, dst)
        assert (moved.key, moved.size, moved.sha256, moved.created_at, moved.metadata) == (
            dst, stored.size, stored.sha256, stored.created_at, {"a": 1})
        assert await storage.stat(src) is None and await storage.stat(dst) == moved
        assert await read(storage, dst) == b"moved bytes"
        again = await storage.move(dst, other, {"b": 2})  # with metadata: replaced
        assert again.metadata == {"b": 2} and (await stat(storage, other)).metadata == {"b": 2}

    async def test_move_of_a_missing_key_raises_object_not_found(self, storage: Storage) -> None:
        dst = key()
        with pytest.raises(ObjectNotFound):
            await storage.move(key("temp"), dst)
        assert await storage.stat(dst) is None

    async def test_move_onto_an_existing_key_raises_object_exists(self, storage: Storage) -> None:
        src, dst = key("temp"), key()
        await put(storage, src, b"source", {"s": 1})
        taken = await put(storage, dst, b"taken", {"t": 1})
        with pytest.raises(ObjectExists):
            await storage.move(src, dst, {"new": True})
        assert await storage.stat(dst) == taken and await read(storage, dst) == b"taken"
        assert (await stat(storage, src)).metadata == {"s": 1} and await read(storage, src) == b"source"

    async def test_racing_moves_of_one_object_have_one_winner(self, storage: Storage) -> None:
        for _ in range(3):
            src, targets = key("temp"), [key(), key()]
            await put(storage, src, b"contested")
            outcomes = await asyncio.gather(*(storage.move(src, dst) for dst in targets), return_exceptions=True)
            winners = [outcome for outcome in outcomes if isinstance(outcome, StoredObject)]
            assert len(winners) == 1, outcomes
            assert all(isinstance(o, ObjectNotFound | ObjectExists) for o in outcomes if o not in winners), outcomes
            assert [await storage.stat(dst) is not None for dst in targets].count(True) == 1
            assert await storage.stat(src) is None
            assert await read(storage, winners[0].key) == b"contested"

    async def test_racing_moves_onto_one_key_have_one_winner(self, storage: Storage) -> None:
        for _ in range(3):
            sources, dst = [key("temp"), key("temp")], key()
            for src in sources:
                await put(storage, src, src.encode())
            outcomes = await asyncio.gather(*(storage.move(src, dst) for src in sources), return_exceptions=True)
            winners = [outcome for outcome in outcomes if isinstance(outcome, StoredObject)]
            assert len(winners) == 1, outcomes
            loser = sources[1 - outcomes.index(winners[0])]
            assert isinstance(outcomes[sources.index(loser)], ObjectExists), outcomes
            assert await read(storage, loser) == loser.encode()  # the loser's object stays where it was
            assert await read(storage, dst) == sources[outcomes.index(winners[0])].encode()

    async def test_update_metadata_replaces_it(self, storage: Storage) -> None:
        target = key()
        stored = await put(storage, target, b"data", {"old": 1, "kept": "no"})
        updated = await storage.update_metadata(target, {"new": 2})
        assert updated == StoredObject(target, stored.size, stored.sha256, stored.created_at, {"new": 2})
        assert await storage.stat(target) == updated
        assert await read(storage, target) == b"data"

    async def test_update_metadata_of_a_missing_key_raises_object_not_found(self, storage: Storage) -> None:
        target = key()
        with pytest.raises(ObjectNotFound):
            await storage.update_metadata(target, {"x": 1})
        assert await storage.stat(target) is None

    # -- keys ---------------------------------------------------------------------------------------

    async def test_every_key_area_the_core_uses(self, storage: Storage) -> None:
        """``files/<owner>/<id>``, ``temp/<owner>/<id>`` and the usage ledger ``usage/<owner>``."""
        who = owner()
        persistent, temporary, ledger = f"files/{who}/{file_id()}", f"temp/{who}/{file_id()}", f"usage/{who}"
        await put(storage, persistent, b"persistent")
        await put(storage, temporary, b"temporary")
        async with storage.writer() as writer:
            await writer.commit(ledger, {"bytes": 0})
        await storage.update_metadata(ledger, {"bytes": 19})
        assert [s.key for s in await storage.list(f"files/{who}/")] == [persistent]
        assert [s.key for s in await storage.list(f"temp/{who}/")] == [temporary]
        assert temporary in [s.key for s in await storage.list("temp/")]
        assert persistent not in [s.key for s in await storage.list("temp/")]
        assert ledger in [s.key for s in await storage.list("usage/")]
        assert (await stat(storage, ledger)).metadata == {"bytes": 19}

    async def test_invalid_keys_are_refused_with_value_error(self, storage: Storage) -> None:
        good = key()
        await put(storage, good, b"good")
        for bad in BAD_KEYS:
            await refused(f"stat({bad!r})", storage.stat, bad)
            await refused(f"read({bad!r})", read, storage, bad)
            await refused(f"delete({bad!r})", storage.delete, bad)
            await refused(f"update_metadata({bad!r})", storage.update_metadata, bad, {})
            await refused(f"move(<good>, {bad!r})", storage.move, good, bad)
            await refused(f"move({bad!r}, <free>)", storage.move, bad, key())
            await refused(f"commit({bad!r})", put, storage, bad, b"never stored")
        assert await read(storage, good) == b"good"

    async def test_invalid_prefixes_are_refused_with_value_error(self, storage: Storage) -> None:
        """A listing prefix is a valid key followed by ``/``."""
        for bad in BAD_PREFIXES:
            await refused(f"list({bad!r})", storage.list, bad)

    # -- several workers ----------------------------------------------------------------------------

    async def test_another_worker_sees_every_change(self, storage: Storage, second_worker: Storage | None) -> None:
        if second_worker is None:
            pytest.skip("no second_worker fixture: the backend serves one worker")
        src, dst = key("temp"), key()
        stored = await put(storage, src, b"shared")
        assert await second_worker.stat(src) == stored and await read(second_worker, src) == b"shared"
        await second_worker.move(src, dst, {"by": "second"})
        assert await storage.stat(src) is None and (await stat(storage, dst)).metadata == {"by": "second"}
        with pytest.raises(ObjectExists):
            await put(second_worker, dst, b"again")
        assert await storage.delete(dst) is True
        assert await second_worker.stat(dst) is None and await second_worker.delete(dst) is False
        contested = key("temp")
        await put(second_worker, contested, b"contested")
        outcomes = await asyncio.gather(storage.move(contested, key()), second_worker.move(contested, key()),
                                        return_exceptions=True)
        assert [isinstance(outcome, StoredObject) for outcome in outcomes].count(True) == 1, outcomes

    # -- staging and readiness ----------------------------------------------------------------------

    async def test_sweep_staging_spares_live_writers_and_objects(self, storage: Storage) -> None:
        kept, target, data = key(), key(), os.urandom(self.large)
        await put(storage, kept, b"committed")
        async with storage.writer() as writer:
            await writer.write(data)
            removed = await storage.sweep_staging()
            assert isinstance(removed, int) and removed >= 0
            await writer.finish()
            await writer.commit(target, {})
        assert await read(storage, target) == data
        assert await read(storage, kept) == b"committed"

    async def test_check_ready(self, storage: Storage) -> None:
        await storage.check_ready()  # raises when the backend cannot be written to
