"""A PATCH asked to let go of its upload: it keeps what its client already sent, then stops.

tus clients that lost their connection come back with HEAD or PATCH while the old PATCH still waits for bytes.
The newer request asks the lock's holder to release; the holder must not drop bytes the server already read
(tus: "store as much of the received data as possible"), nor keep the upload from the newer request for long.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

RELEASE_GRACE = 0.2  # after a release request, how long the body may go on: what was already sent comes at once


class Released(Exception):
    """The body was cut short because another request asked for the upload."""


async def until_released(chunks: AsyncIterator[bytes], released: asyncio.Event) -> AsyncIterator[bytes]:
    """``chunks`` until ``released`` is set; from then on only what already arrived: the body ends with
    ``Released`` ``RELEASE_GRACE`` seconds later at the latest (an append keeps what it stored, as tus asks), so
    a client still sending does not keep the upload from the request that asked for it."""
    loop = asyncio.get_running_loop()
    iterator = aiter(chunks)
    deadline: float | None = None
    while deadline is None or loop.time() < deadline:
        step = asyncio.ensure_future(anext(iterator, None))
        try:
            if not released.is_set():
                waiter = asyncio.ensure_future(released.wait())
                await asyncio.wait({step, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            if released.is_set() and not step.done():
                deadline = deadline if deadline is not None else loop.time() + RELEASE_GRACE
                await asyncio.wait({step}, timeout=max(deadline - loop.time(), 0))
            if not step.done():
                raise Released()
            chunk = step.result()
        finally:
            if not step.done():  # released, or this body itself was cancelled: stop reading the client
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
        if chunk is None:
            return
        yield chunk
        if released.is_set() and deadline is None:
            deadline = loop.time() + RELEASE_GRACE
    raise Released()
