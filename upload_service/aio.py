"""asyncio helpers for clean-ups that must complete even when the request around them is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def complete(awaitable: Awaitable[T]) -> T:
    """Run ``awaitable`` to its end even if we are cancelled (once or many times) meanwhile.

    ``asyncio.shield`` alone lets the caller go on while the work still runs; a clean-up that releases a
    lock afterwards must not. A cancellation that arrived while waiting is re-raised once the work is done.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                result = task.result()
                break
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError()
    return result
