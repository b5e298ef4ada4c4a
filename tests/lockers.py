"""The take-over scenario every tus locker must pass (file locker, Redis locker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from upload_service import Locker
from upload_service.errors import Problem


async def check_take_over(holder: Locker, newcomer: Locker, upload_id: str,
                          while_taken: Callable[[], Awaitable[None]] | None = None, namespace: str = "tus") -> None:
    """A stale holder keeps the lock until a newer request asks: without take-over the newcomer gets 423 and the
    holder is not disturbed; with it, the holder is asked to let go and the newcomer gets a lock of its own."""
    events: list[str] = []
    held = asyncio.Event()

    async def stale_holder() -> None:
        async with holder.hold(namespace, upload_id) as lock:
            events.append("held")
            held.set()
            await asyncio.wait_for(lock.release_requested.wait(), 5)
            events.append("asked")

    task = asyncio.create_task(stale_holder())
    await asyncio.wait_for(held.wait(), 5)
    with pytest.raises(Problem) as refused:
        async with newcomer.hold(namespace, upload_id, take_over=False):
            pass
    assert refused.value.status == 423 and events == ["held"]
    async with newcomer.hold(namespace, upload_id) as lock:
        assert events == ["held", "asked"] and not lock.release_requested.is_set()
        if while_taken is not None:
            await while_taken()
    await task


async def check_namespaces(locker: Locker) -> None:
    """Namespaces keep locks apart: one name held in ``tus`` does not hold it in ``usage`` (a client-chosen tus id
    is never an owner's ledger lock), and what no namespace or name can be is refused."""
    async with locker.hold("tus", "usage-0123456789abcdef"):
        async with locker.hold("usage", "usage-0123456789abcdef", take_over=False):
            pass
        with pytest.raises(Problem):
            async with locker.hold("tus", "usage-0123456789abcdef", take_over=False):
                pass
    for namespace, name in (("tus", "../escape"), ("tus", "a/b"), ("tus", "a.b"), ("tus", "a:b"), ("", "a"),
                            ("Usage", "a"), ("a:b", "c"), ("a/b", "c"), ("..", "c")):
        with pytest.raises(ValueError):
            async with locker.hold(namespace, name):
                pass
