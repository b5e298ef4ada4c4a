"""The Redis locker driven directly against a real redis-server: take-over, expiry, compare-and-delete."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from redis.asyncio import Redis

from upload_service import Locker
from upload_service.errors import Problem
from upload_service_redis.locker import RedisLocker

from .lockers import check_namespaces, check_take_over

UPLOAD = "upload-dddddddddddddddd"


@pytest.fixture
async def client(redis_server):
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def locker(client: Redis, **options) -> RedisLocker:
    """A locker under a fresh prefix, as a separate instance of the service would have (same prefix there)."""
    return RedisLocker(client, prefix=options.pop("prefix", f"t{secrets.token_hex(4)}:"), **options)


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
        assert await client.keys(f"{one.prefix}*") == [f"{one.prefix}lock:tus:{UPLOAD}".encode()]
    assert await client.keys(f"{one.prefix}*") == []
    async with one.hold("tus", UPLOAD) as lock:
        await client.set(f"{one.prefix}release:tus:{UPLOAD}", "1")
        lock.forget()
    assert await client.keys(f"{one.prefix}*") == []


async def test_namespaces_keep_locks_apart(client) -> None:
    await check_namespaces(locker(client))


async def test_keys_say_their_namespace(client) -> None:
    """A ledger lock and a tus lock of the same name are two keys; nothing is left to sweep."""
    one = locker(client)
    async with one.hold("usage", "0123456789abcdef"), one.hold("tus", "0123456789abcdef"):
        assert sorted(await client.keys(f"{one.prefix}*")) == [f"{one.prefix}lock:tus:0123456789abcdef".encode(),
                                                               f"{one.prefix}lock:usage:0123456789abcdef".encode()]
    assert await one.sweep() == 0
