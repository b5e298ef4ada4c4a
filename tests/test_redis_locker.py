"""The Redis locker driven directly against a real redis-server: take-over, expiry, compare-and-delete, and a dead
holder's lock taken over at once (its process killed) while a live but stalled one's is not."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from redis.asyncio import Redis

from upload_service import Locker
from upload_service.errors import Problem
from upload_service.identity import owner_key
from upload_service.testing import TEST_LOGIN
from upload_service_redis.locker import RedisLocker

from .lockers import check_namespaces, check_take_over

UPLOAD = "upload-dddddddddddddddd"
# Another instance's process holding a lock, whose event loop then stalls: it extends nothing any more, but it is
# alive (its heartbeat thread beats) until the test kills it with SIGKILL.
HOLDER = """
import asyncio, sys, time
from redis.asyncio import Redis
from upload_service_redis.locker import RedisLocker

async def main():
    url, prefix, namespace, name = sys.argv[1:]
    locker = RedisLocker(Redis.from_url(url), prefix=prefix, ttl=30, alive=0.5, beat=0.1)
    async with locker.hold(namespace, name):
        print("held", flush=True)
        time.sleep(600)

asyncio.run(main())
"""


@contextmanager
def holder(url: str, prefix: str, namespace: str, name: str) -> Iterator[subprocess.Popen]:
    """A process that holds ``namespace:name`` (30 s ttl) and stalls, until killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, url, prefix, namespace, name], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"held\n"
        yield process
    finally:
        process.kill()
        process.wait()


_made: list[RedisLocker] = []


@pytest.fixture
async def client(redis_server):
    client = Redis.from_url(redis_server.url)
    yield client
    while _made:
        await _made.pop().heart.stop()
    await client.aclose()


def locker(client: Redis, **options) -> RedisLocker:
    """A locker under a fresh prefix, as a separate instance of the service would have (same prefix there)."""
    made = RedisLocker(client, prefix=options.pop("prefix", f"t{secrets.token_hex(4)}:"), **options)
    _made.append(made)
    return made


async def lock_keys(client: Redis, prefix: str) -> list[bytes]:
    """The keys of locks and release requests (a process's alive key aside: it outlives its locks a while)."""
    return sorted(key for key in await client.keys(f"{prefix}*") if not key.startswith(f"{prefix}alive:".encode()))


async def test_is_a_locker(client) -> None:
    assert isinstance(locker(client), Locker)


async def test_a_newer_request_makes_the_holder_on_another_instance_let_go(client, redis_server) -> None:
    prefix = f"t{secrets.token_hex(4)}:"
    other_client = Redis.from_url(redis_server.url)  # the other instance: its own connections
    first, second = locker(client, prefix=prefix, wait=5, poll=0.01, watch=0.02), \
        locker(other_client, prefix=prefix, wait=5, poll=0.01, watch=0.02)

    async def release_request_is_gone() -> None:
        assert await client.exists(f"{prefix}release:tus:{UPLOAD}") == 0  # the request was for the old holder only

    await check_take_over(first, second, UPLOAD, release_request_is_gone)
    await other_client.aclose()


async def test_held_lock_is_extended_past_its_ttl(client) -> None:
    one = locker(client, ttl=0.3, watch=0.05)
    async with one.hold("tus", UPLOAD) as lock:
        await asyncio.sleep(0.8)  # the behaviour: held for more than twice the ttl
        assert not lock.release_requested.is_set()
        with pytest.raises(Problem):
            async with one.hold("tus", UPLOAD, take_over=False):
                pass


async def test_lock_of_a_dead_holder_expires(client) -> None:
    """A holder that stops extending (its process died) no longer blocks anyone after the ttl."""
    one = locker(client, ttl=0.5, wait=3, poll=0.02)
    await client.set(f"{one.prefix}lock:tus:{UPLOAD}", "token-of-a-dead-instance", px=500)
    with pytest.raises(Problem):
        async with one.hold("tus", UPLOAD, take_over=False):
            pass
    started = asyncio.get_running_loop().time()
    async with one.hold("tus", UPLOAD):
        waited = asyncio.get_running_loop().time() - started
    assert 0.2 < waited < 3


async def test_release_never_deletes_the_next_holders_lock(client) -> None:
    """A holder whose lock expired and was taken by someone else stops, and its release leaves the new lock."""
    one = locker(client, ttl=0.3, watch=0.05)
    key = f"{one.prefix}lock:tus:{UPLOAD}"
    async with one.hold("tus", UPLOAD) as lock:
        await client.set(key, "someone-else", px=10_000)  # as if ours had expired and been taken meanwhile
        await asyncio.wait_for(lock.release_requested.wait(), 2)
    assert await client.get(key) == b"someone-else"


async def test_release_and_forget_leave_no_keys(client) -> None:
    one = locker(client)
    async with one.hold("tus", UPLOAD):
        assert await lock_keys(client, one.prefix) == [f"{one.prefix}lock:tus:{UPLOAD}".encode()]
    assert await lock_keys(client, one.prefix) == []
    async with one.hold("tus", UPLOAD) as lock:
        await client.set(f"{one.prefix}release:tus:{UPLOAD}", "1")
        lock.forget()
    assert await lock_keys(client, one.prefix) == []


async def test_namespaces_keep_locks_apart(client) -> None:
    await check_namespaces(locker(client))


async def test_keys_say_their_namespace(client) -> None:
    """A ledger lock and a tus lock of the same name are two keys; nothing is left to sweep."""
    one = locker(client)
    async with one.hold("usage", "0123456789abcdef"), one.hold("tus", "0123456789abcdef"):
        assert await lock_keys(client, one.prefix) == [f"{one.prefix}lock:tus:0123456789abcdef".encode(),
                                                               f"{one.prefix}lock:usage:0123456789abcdef".encode()]
    assert await one.sweep() == 0


@pytest.mark.process
async def test_a_dead_holders_lock_is_taken_over_at_once_and_a_stalled_live_ones_is_not(client, redis_server):
    """The lock's ttl is 30 s: a holder whose process lives keeps it while it stalls, past its alive key's expiry
    (0.5 s); once its process is killed, the lock is taken within about that expiry, not after the ttl."""
    one = locker(client, wait=1.0, poll=0.02)
    with holder(redis_server.url, one.prefix, "usage", "0123456789abcdef") as process:
        with pytest.raises(Problem):  # 1 s of asking, twice its alive expiry: the stalled holder keeps its lock
            async with one.hold("usage", "0123456789abcdef"):
                pass
        process.kill()
        process.wait()
        started = time.monotonic()
        one.wait = 5
        async with one.hold("usage", "0123456789abcdef"):
            took = time.monotonic() - started
    assert took < 2.5, f"took {took:.1f} s"


def test_a_delete_behind_a_dead_instances_usage_ledger_lock_answers_at_once(upload_service_factory, redis_server):
    """An instance killed while it held an owner's usage-ledger lock (30 s lease): a DELETE on another instance
    takes the lock over as soon as the dead one's alive key is gone, answers 204 within seconds, and frees the
    quota (not 15 s of REDIS_LOCK_WAIT, then 204 with the file still counted)."""
    prefix = f"t{secrets.token_hex(4)}:"
    running = upload_service_factory(locker="redis", redis_url=redis_server.url, user_quota_files="1",
                                     plugin_settings={"REDIS_KEY_PREFIX": prefix, "REDIS_LOCK_TTL": "30s"})
    api = running.client()
    file_id = api.put("/api/files/a.txt", content=b"a").json()["id"]
    with holder(redis_server.url, prefix, "usage", owner_key(f"token:{TEST_LOGIN}")) as process:
        process.kill()
        started = time.monotonic()
        assert api.delete(f"/api/files/{file_id}").status_code == 204
        took = time.monotonic() - started
    assert took < 5, f"took {took:.1f} s"
    assert api.put("/api/files/b.txt", content=b"b").status_code == 201  # the delete was uncounted
