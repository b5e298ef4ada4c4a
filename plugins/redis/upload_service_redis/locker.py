"""``LOCKER=redis``: one writer per tus upload across every instance that shares a Redis.

The lock is a key set with ``SET NX PX`` to a random token; while it is held one loop, every ``watch``
seconds, runs one script that extends the key (if the token is still ours) and reports whether someone asked
us to let go. A holder that dies stops extending and the key expires after ``ttl``. Release deletes the key
only if it still holds our token, so a holder that lost its lock never deletes the next holder's.

A dead holder's lock is taken over long before its ``ttl``: each process that holds locks keeps a key of its own,
``<prefix>alive:<holder>``, set from a thread of its own every ``beat`` seconds to expire after ``alive``; a
lock's token names its holder, and a request that finds the lock held by a holder whose key is gone (the process
died: ``kill -9``, a crash, a lost machine) takes the lock at once. A holder that is alive but slow (its event loop
stalled, so it cannot extend its locks) keeps beating from its thread, so its locks last their full ``ttl``:
a short ``alive`` cannot hand a live holder's lock to someone else, as a short ``ttl`` could.

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
import threading
import time
from collections.abc import AsyncIterator

from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from upload_service import LockBusy, UploadLock, check_lock_name

log = logging.getLogger("upload_service.redis")

# KEYS: lock, release. ARGV: token, ttl ms, alive-key prefix. Taking the lock clears release requests meant for
# the old holder. A lock whose token names a holder (``<holder>/<random>``) without an alive key is a dead one's.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
local holder = string.match(redis.call('GET', KEYS[1]) or '', '^(.+)/[^/]+$')
if holder and redis.call('EXISTS', ARGV[3] .. holder) == 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('DEL', KEYS[2])
  return 2
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
                 poll: float = 0.05, watch: float = 0.1, alive: float = 2.0, beat: float = 0.25) -> None:
        if watch * 3 > ttl:
            raise ValueError("the lock's ttl must be at least three times the watch interval")
        if beat * 4 > alive:
            raise ValueError("the alive key's expiry must be at least four times the beat interval")
        self.client = client
        self.prefix = prefix
        self.ttl_ms = int(ttl * 1000)
        self.wait = wait
        self.poll = poll
        self.watch = watch
        self.heart = Heartbeat(client, f"{prefix}alive:", alive, beat)
        self._acquire_script = client.register_script(_ACQUIRE)
        self._renew_script = client.register_script(_RENEW)
        self._release_script = client.register_script(_RELEASE)

    def _keys(self, namespace: str, name: str) -> list[str]:
        check_lock_name(namespace, name)
        return [f"{self.prefix}lock:{namespace}:{name}", f"{self.prefix}release:{namespace}:{name}"]

    async def _acquire(self, keys: list[str], token: str, take_over: bool) -> None:
        deadline = time.monotonic() + self.wait
        while not (taken := await self._acquire_script(keys=keys, args=[token, self.ttl_ms, self.heart.prefix])):
            if not take_over or time.monotonic() > deadline:
                raise LockBusy()
            await self.client.set(keys[1], "1", px=max(self.ttl_ms, int(self.wait * 1000)))
            await asyncio.sleep(self.poll)
        if taken == 2:
            log.info("took over %s from a holder that died", keys[0])

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
        holder = await self.heart.enter()  # alive before it holds anything, or the lock would look a dead one's
        try:
            token = f"{holder}/{secrets.token_hex(12)}"  # who holds it: for the take-over, and operators in Redis
            await self._acquire(keys, token, take_over)
        except BaseException:
            self.heart.leave()
            raise
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
            finally:
                self.heart.leave()

    async def sweep(self) -> int:
        """Nothing to sweep: every key this locker sets expires by itself."""
        return 0

    async def close(self) -> None:
        await self.heart.stop()
        await self.client.aclose()


class Heartbeat:
    """This process's alive key (``<prefix><holder>``), set every ``beat`` seconds to expire ``alive`` seconds later
    by a thread of its own (with its own event loop and connection), so it lasts exactly as long as the process.

    The thread beats while the process holds locks and ``linger`` seconds after, then ends and removes its key; the
    next lock starts a new one under a new name. A hold counts itself in (``enter``) before it takes its lock,
    and the thread ends only while nothing is held, so no lock is ever held under a name without its key.
    """

    def __init__(self, client: Redis, prefix: str, alive: float, beat: float, linger: float = 10.0) -> None:
        self.client = client
        self.prefix = prefix
        self.alive_ms = int(alive * 1000)
        self.beat = beat
        self.linger = linger
        self.holder = ""
        self._mutex = threading.Lock()  # between the event loop's holds and the thread's decision to end
        self._holding = 0
        self._last_held = 0.0
        self._running_in = 0  # the pid whose thread beats (a forked child has none)
        self._starting: asyncio.Future[None] | None = None
        self._stop = threading.Event()

    async def enter(self) -> str:
        """Count a hold in and return the holder name its token carries, once its alive key is set."""
        with self._mutex:
            self._holding += 1
            if self._running_in == os.getpid():
                return self.holder
        try:
            if self._starting is None or self._starting.done():
                self._starting = asyncio.ensure_future(self._start())
            await asyncio.shield(self._starting)
        except BaseException:
            self.leave()
            raise
        return self.holder

    def leave(self) -> None:
        with self._mutex:
            self._holding -= 1
            self._last_held = time.monotonic()

    async def _start(self) -> None:
        holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        await self.client.set(self.prefix + holder, "1", px=self.alive_ms)
        with self._mutex:
            self.holder, self._running_in, self._stop = holder, os.getpid(), threading.Event()
        threading.Thread(target=asyncio.run, args=(self._keep(self.prefix + holder, self._stop),), daemon=True,
                         name="redis-locker-heartbeat").start()

    def _done(self, stop: threading.Event) -> bool:
        with self._mutex:
            idle = self._holding == 0 and time.monotonic() - self._last_held > self.linger
            if stop.is_set() or idle:
                if self._stop is stop:
                    self._running_in = 0
                return True
        return False

    async def _keep(self, key: str, stop: threading.Event) -> None:
        pool = self.client.connection_pool
        client = Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class,
                                                      **pool.connection_kwargs))
        try:
            while not self._done(stop):
                try:
                    await client.set(key, "1", px=self.alive_ms)
                except RedisError:  # Redis away for a moment: the key outlives a few missed beats
                    log.warning("could not renew %s", key, exc_info=True)
                stop.wait(self.beat)  # this loop has nothing else to do
            with contextlib.suppress(RedisError):
                await client.delete(key)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Stop beating (the service stops, holding nothing any more): the key goes."""
        self._stop.set()
