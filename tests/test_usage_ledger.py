"""The usage ledger heals itself: holds of an instance that died expire, and stale totals are counted again.

The service runs in-process (``upload_service_factory``) so that the test can write the ledger the way another
instance would have left it (through its own ``UsageLedger``, under the same file locks), then upload over HTTP.
"""

from __future__ import annotations

import time

from upload_service.identity import owner_key
from upload_service.testing import TEST_LOGIN
from upload_service.usage import NOTE, RECOUNT_AFTER, Hold, Usage, UsageLedger

OWNER = owner_key(f"token:{TEST_LOGIN}")


async def leave(running, edit) -> Usage:
    """Change the ledger as another instance would, and return it as saved."""
    ledger = UsageLedger(running.service)

    def apply(usage: Usage) -> Usage:
        edit(usage)
        return usage

    return await ledger.change(OWNER, apply)


async def test_the_slot_of_a_live_holder_counts_and_of_a_dead_one_expires(upload_service_factory):
    running = upload_service_factory(max_concurrent_uploads="1")
    client = running.client()
    await leave(running, lambda usage: usage.holds.update(other=Hold(slot=True, until=time.time() + 60)))
    busy = client.put("/api/files/a.txt", content=b"a")
    assert busy.status_code == 429 and busy.json()["in_progress"] == 1
    await leave(running, lambda usage: usage.holds.update(other=Hold(slot=True, until=time.time() - 1)))
    assert client.put("/api/files/a.txt", content=b"a").status_code == 201
    assert "other" not in (await UsageLedger(running.service).read(OWNER)).holds


async def test_a_dead_holders_quota_comes_back_when_its_lease_ends(upload_service_factory):
    running = upload_service_factory(user_quota_bytes="1000")
    client = running.client()
    await leave(running, lambda usage: usage.holds.update(other=Hold(bytes=900, files=1, until=time.time() + 60)))
    refused = client.put("/api/files/a.bin", content=b"x" * 200)
    assert refused.status_code == 413 and refused.json()["used"] == 900
    await leave(running, lambda usage: usage.holds.update(other=Hold(bytes=900, files=1, until=time.time() - 1)))
    assert client.put("/api/files/a.bin", content=b"x" * 200).status_code == 201


async def test_stale_totals_are_counted_again_from_storage(upload_service_factory):
    running = upload_service_factory(user_quota_files="2")
    client = running.client()
    assert client.put("/api/files/real.txt", content=b"stored").status_code == 201

    def drift(usage: Usage) -> None:  # what a crash between deleting a file and uncounting it leaves
        usage.files, usage.bytes = 2, 100

    await leave(running, drift)
    assert client.put("/api/files/b.txt", content=b"b").status_code == 413  # fresh totals are trusted

    def drift_long_ago(usage: Usage) -> None:
        drift(usage)
        usage.counted_at = time.time() - RECOUNT_AFTER - 1

    await leave(running, drift_long_ago)
    assert client.put("/api/files/b.txt", content=b"b").status_code == 201  # recounted: 1 file, then 2
    usage = await UsageLedger(running.service).read(OWNER)
    assert (usage.files, usage.bytes) == (2, len(b"stored") + 1)


async def test_a_note_of_an_unsettled_keyed_upload_neither_blocks_a_recount_nor_outlives_it(upload_service_factory):
    """A note (an Idempotency-Key upload that may have stored files it did not count, its instance dead) lasts
    as long as the key, but a recount counts every file anyway: it runs past the note, and drops it."""
    running = upload_service_factory(user_quota_files="5")
    client = running.client()
    assert client.put("/api/files/real.txt", content=b"stored").status_code == 201

    def dead_keyed_upload(usage: Usage) -> None:
        usage.holds[f"{NOTE}0123"] = Hold(until=time.time() + 86400)
        usage.files, usage.bytes = 0, 0  # its file stored, not counted
        usage.counted_at = time.time() - RECOUNT_AFTER - 1

    await leave(running, dead_keyed_upload)
    assert client.put("/api/files/b.txt", content=b"b").status_code == 201
    usage = await UsageLedger(running.service).read(OWNER)
    assert (usage.files, usage.bytes, usage.holds) == (2, len(b"stored") + 1, {})
