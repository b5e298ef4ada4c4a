"""How the core calls hooks that may be async.

pluggy is synchronous: an ``async def`` implementation returns a coroutine, so hooks are called normally
and their awaitable results awaited afterwards, in pluggy's order.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import pluggy

log = logging.getLogger("upload_service.plugins")


async def call_all(hook: pluggy.HookCaller, **kwargs: Any) -> list[Any]:
    """Call a hook and await each awaitable result in order; exceptions propagate."""
    called, results = list(hook(**kwargs)), []
    try:
        for result in called:
            results.append(await result if inspect.isawaitable(result) else result)
    finally:
        for left in called[len(results) + 1:]:  # after a failure: the coroutines never awaited are closed
            if inspect.iscoroutine(left):
                left.close()
    return results


async def notify(hook: pluggy.HookCaller, **kwargs: Any) -> None:
    """Call a notification hook: run the awaitable results together and log failures instead of raising."""
    try:
        results = hook(**kwargs)
    except Exception:
        log.exception("hook %s failed", hook.name)
        return
    awaitables = [result for result in results if inspect.isawaitable(result)]
    for outcome in await asyncio.gather(*awaitables, return_exceptions=True):
        if isinstance(outcome, BaseException):
            log.error("hook %s failed", hook.name, exc_info=outcome)
