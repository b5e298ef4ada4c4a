"""``LOCKER=redis``: one writer per tus upload across every instance that shares a Redis.

The lock is a key set with ``SET NX PX`` to a random token; while it is held one loop, every ``watch``
seconds, runs one script that extends the key (if the token is still ours) and reports whether someone asked
us to let go. A holder that dies stops extending and the key expires after ``ttl``. Release deletes the key
only if it still holds our token, so a holder that lost its lock never deletes the next holder's.

A request that finds the upload locked sets ``release:<namespace>:<name>`` (the tusd way) and retries until ``wait``
seconds passed; the holder, on another instance or this one, sees the key between chunks and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from upload_service import LockBusy, UploadLock, check_lock_name

log = logging.getLogger("upload_service.redis")

# KEYS: lock, release. ARGV: token, ttl ms. Taking the lock clears release requests meant for the old holder.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""
# KEYS: lock, release. ARGV: token, ttl ms. -1: the lock is not ours any more; 1: asked to release; 0: keep on.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('EXISTS', KEYS[2])
"""
# KEYS: lock, release. ARGV: token, forget (1: also drop pending release requests).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] == '1' then redis.call('DEL', KEYS[2]) end
  return 1
end
return 0
"""


class RedisLocker:
    """Locks in Redis under ``<prefix>lock:<namespace>:<name>``, release requests under
    ``<prefix>release:<namespace>:<name>`` (a namespace holds no colon, so no two locks share a key)."""

    def __init__(self, client: Redis, *, prefix: str = "upload-service:", ttl: float = 30.0, wait: float = 10.0,
                 poll: float = 0.05, watch: float = 0.1) -> None:
        if watch * 3 > ttl:
            raise ValueError("the lock's ttl must be at least three times the watch interval")
        self.client = client
        self.prefix = prefix
        self.ttl_ms = int(ttl * 1000)
        self.wait = wait
        self.poll = poll
        self.watch = watch
        self.holder = f"{socket.gethostname()}:{os.getpid()}"
        self._acquire_script = client.register_script(_ACQUIRE)
        self._renew_script = client.register_script(_RENEW)
        self._release_script = client.register_script(_RELEASE)

    def _keys(self, namespace: str, name: str) -> list[str]:
        check_lock_name(namespace, name)
        return [f"{self.prefix}lock:{namespace}:{name}", f"{self.prefix}release:{namespace}:{name}"]

    async def _acquire(self, keys: list[str], token: str, take_over: bool) -> None:
        deadline = time.monotonic() + self.wait
        while not await self._acquire_script(keys=keys, args=[token, self.ttl_ms]):
            if not take_over or time.monotonic() > deadline:
                raise LockBusy()
            await self.client.set(keys[1], "1", px=max(self.ttl_ms, int(self.wait * 1000)))
            await asyncio.sleep(self.poll)

    async def _keep(self, keys: list[str], token: str, lock: UploadLock) -> None:
        """Extend the lock and watch for release requests until the block ends; let go if the lock is lost."""
        while True:
            await asyncio.sleep(self.watch)
            try:
                state = await self._renew_script(keys=keys, args=[token, self.ttl_ms])
            except RedisError:  # Redis away for a moment: the key outlives a few missed renewals
                log.warning("could not extend the lock %s", keys[0], exc_info=True)
                continue
            if state != 0:
                if state < 0:
                    log.warning("lost the lock %s (expired while held): stopping", keys[0])
                lock.release_requested.set()
                return

    @contextlib.asynccontextmanager
    async def hold(self, namespace: str, name: str, *, take_over: bool = True) -> AsyncIterator[UploadLock]:
        keys = self._keys(namespace, name)
        token = f"{self.holder}:{secrets.token_hex(12)}"  # who holds it, for operators looking into Redis
        await self._acquire(keys, token, take_over)
        lock = UploadLock()
        keeper = asyncio.create_task(self._keep(keys, token, lock))
        try:
            yield lock
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            try:
                await asyncio.shield(self._release_script(keys=keys, args=[token, "1" if lock.forgotten else "0"]))
            except RedisError:  # the key expires after the ttl anyway; the request's own outcome matters more
                log.warning("could not release the lock %s", keys[0], exc_info=True)

    async def sweep(self) -> int:
        """Nothing to sweep: every key this locker sets expires by itself."""
        return 0

    async def close(self) -> None:
        await self.client.aclose()
