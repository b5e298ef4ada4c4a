"""Unpredictable ids and names from the OS's CSPRNG, drawn a block at a time.

A small upload needs five random values (request id, reservation, file id, staging folder, metadata temp
file). Each ``secrets`` or ``uuid4`` call is a ``getrandom`` system call, and on a virtual machine those
cost enough to show up in the event loop's profile (a tenth of its time at a few hundred uploads a second).
The bytes here are the same ``os.urandom`` bytes, fetched 4 KiB at a time and never handed out twice; a
forked child starts with an empty block, so parent and child never share one. Secrets that outlive a request
(keys, tokens, CSRF values) still come straight from ``secrets``.
"""

from __future__ import annotations

import os
import threading

BLOCK_SIZE = 4096


class _Block:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data = b""
        self.used = 0

    def take(self, count: int) -> bytes:
        with self.lock:
            if self.used + count > len(self.data):
                self.data = os.urandom(max(BLOCK_SIZE, count))
                self.used = 0
            start, self.used = self.used, self.used + count
            return self.data[start:self.used]

    def forget(self) -> None:
        self.lock = threading.Lock()
        self.data, self.used = b"", 0


_BLOCK = _Block()
os.register_at_fork(after_in_child=_BLOCK.forget)


def random_bytes(count: int) -> bytes:
    """``count`` bytes from the OS's CSPRNG (see the module docstring)."""
    return _BLOCK.take(count)


def random_hex(count: int) -> str:
    """``count`` random bytes as ``2 * count`` hex digits: ``secrets.token_hex(count)`` without a system call."""
    return _BLOCK.take(count).hex()


def random_bits(bits: int) -> int:
    """A random integer of ``bits`` bits: ``secrets.randbits(bits)`` without a system call."""
    return int.from_bytes(_BLOCK.take((bits + 7) // 8), "big") >> (-bits % 8)
