"""A PATCH asked to let go of its upload (``until_released``): it keeps what the client already sent and stops
soon, whether its client went silent or is still sending."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from upload_service.builtin.tus.release import Released, until_released


async def collect(body: AsyncIterator[bytes], into: list[bytes]) -> None:
    async for chunk in body:
        into.append(chunk)


async def test_a_silent_client_keeps_what_it_sent() -> None:
    buffered: asyncio.Queue[bytes] = asyncio.Queue()
    for part in (b"a" * 10, b"b" * 10):
        buffered.put_nowait(part)

    async def client() -> AsyncIterator[bytes]:
        while True:
            yield await buffered.get()  # then waits for bytes that never come

    released, taken = asyncio.Event(), []
    reading = asyncio.ensure_future(collect(until_released(client(), released), taken))
    await asyncio.sleep(0.05)
    released.set()
    with pytest.raises(Released):
        async with asyncio.timeout(2):  # far above the grace: stopping must not wait for the client
            await reading
    assert taken == [b"a" * 10, b"b" * 10]


async def test_a_client_still_sending_is_stopped_too() -> None:
    async def client() -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.001)
            yield b"x"

    released, taken = asyncio.Event(), []
    reading = asyncio.ensure_future(collect(until_released(client(), released), taken))
    await asyncio.sleep(0.05)
    released.set()
    with pytest.raises(Released):
        async with asyncio.timeout(2):
            await reading
    assert taken  # what came before and during the grace counts


async def test_a_body_that_ends_is_whole_without_a_release() -> None:
    async def client() -> AsyncIterator[bytes]:
        for part in (b"one", b"two"):
            yield part

    taken: list[bytes] = []
    await collect(until_released(client(), asyncio.Event()), taken)
    assert taken == [b"one", b"two"]
