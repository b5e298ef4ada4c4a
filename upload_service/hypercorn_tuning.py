"""Hypercorn knobs that its ``Config`` does not expose, set in every process that serves."""

from __future__ import annotations

import hypercorn.asyncio.tcp_server

RECEIVE_SIZE = 1024 * 1024


def tune_hypercorn() -> None:
    """Let one socket read take up to ``RECEIVE_SIZE`` bytes (Hypercorn asks for 64 KiB).

    Each read becomes one ASGI message that passes through h11, Hypercorn's queue and the upload pipeline;
    at 64 KiB a 1 GiB upload is 16,000 of them and their handling, not the copying, bounds the event loop.
    With uvloop a read returns at most 256 KiB (its buffer), so a GiB is about 4,000 messages and uploads run
    about a fifth faster; memory grows by Hypercorn's queue of ten such messages per request.
    """
    hypercorn.asyncio.tcp_server.MAX_RECV = RECEIVE_SIZE  # type: ignore[attr-defined]
