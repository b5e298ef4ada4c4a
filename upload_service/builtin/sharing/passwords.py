"""Link passwords: hashed with Argon2id (argon2-cffi) and guarded against guessing, per link and per address.

Hashing and checking take tens of milliseconds of CPU by design, so they run in a worker thread and never
stall the event loop. Failed attempts are counted in the link's record (under its lock), so every instance sees
the same count: at most ``PER_ADDRESS`` wrong passwords from one address and ``PER_LINK`` from everyone in each
``WINDOW`` seconds; past either, the answer is 429 with ``Retry-After`` and the password is not even checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .records import Attempts

WINDOW = 600.0
PER_ADDRESS = 5
PER_LINK = 50
MAX_ADDRESSES = 200  # addresses remembered per link and window; beyond, only the link's total counts
MAX_PASSWORD = 1024  # characters; Argon2 takes any length, but nobody types more

CONCURRENT = 2  # Argon2 runs at once per process: each takes 64 MiB while it runs


class Passwords:
    """Hash and check passwords off the event loop, a bounded number at a time (memory stays bounded too)."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()  # RFC 9106's second recommendation: Argon2id, 64 MiB, 3 passes
        self._running = asyncio.Semaphore(CONCURRENT)

    async def hash(self, password: str) -> str:
        async with self._running:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def matches(self, stored_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(stored_hash, password)
            except (VerificationError, InvalidHashError):
                return False
        async with self._running:
            return await asyncio.to_thread(check)


def address_tag(address: str) -> str:
    """Addresses are kept as short hashes: the record needs to tell them apart, not to know them."""
    return hashlib.sha256(address.encode()).hexdigest()[:16]


def retry_after(attempts: Attempts, address: str, at: float | None = None) -> int | None:
    """Seconds until this address may try again, or None when it may try now."""
    at = time.time() if at is None else at
    if at - attempts.window_start >= WINDOW:
        return None
    if attempts.total >= PER_LINK or attempts.by_address.get(address_tag(address), 0) >= PER_ADDRESS:
        return max(1, int(attempts.window_start + WINDOW - at) + 1)
    return None


def count_failure(attempts: Attempts, address: str, at: float | None = None) -> None:
    at = time.time() if at is None else at
    if at - attempts.window_start >= WINDOW:
        attempts.window_start, attempts.total, attempts.by_address = at, 0, {}
    attempts.total += 1
    tag = address_tag(address)
    if tag in attempts.by_address or len(attempts.by_address) < MAX_ADDRESSES:
        attempts.by_address[tag] = attempts.by_address.get(tag, 0) + 1


def give_back(attempts: Attempts, address: str, at: float | None = None) -> None:
    """Undo ``count_failure`` for an attempt that turned out right (within the same window)."""
    at = time.time() if at is None else at
    if at - attempts.window_start >= WINDOW or not attempts.total:
        return
    attempts.total -= 1
    tag = address_tag(address)
    if attempts.by_address.get(tag):
        attempts.by_address[tag] -= 1
