"""GitHub's verdict on bearer tokens, reused for a short time so a burst of API calls costs one GitHub call.

Entries are keyed by the token's sha256, so the process never keeps a token it has been shown. A revoked token
stops working within ``ttl``. Concurrent requests with the same uncached token share one GitHub call. Failures
(GitHub down) are not cached: the next request asks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Verdict = TypeVar("Verdict")


class TokenCache(Generic[Verdict]):
    def __init__(self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Verdict]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[Verdict]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, token: str, check: Callable[[], Awaitable[Verdict]]) -> Verdict:
        """The cached verdict on ``token``, or ``await check()`` (once, however many callers wait for it)."""
        key = hashlib.sha256(token.encode()).digest()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self.clock():
            return entry[1]
        future = self._pending.get(key)
        if future is None:
            future = asyncio.ensure_future(self._fill(key, check))
            future.add_done_callback(_consume_error)
            self._pending[key] = future
        # shield: one caller's disconnect must not cancel the check the other callers are waiting for
        return await asyncio.shield(future)

    async def _fill(self, key: bytes, check: Callable[[], Awaitable[Verdict]]) -> Verdict:
        try:
            verdict = await check()
            if self.ttl > 0:
                self._store(key, verdict)
            return verdict
        finally:
            self._pending.pop(key, None)

    def _store(self, key: bytes, verdict: Verdict) -> None:
        self._entries.pop(key, None)
        self._entries[key] = (self.clock() + self.ttl, verdict)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)  # the oldest entry goes first


def _consume_error(future: asyncio.Future) -> None:
    """Mark a failed check's error as seen even when every waiter was cancelled (no "never retrieved" noise)."""
    if not future.cancelled():
        future.exception()
