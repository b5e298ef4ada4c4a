"""Blocking file work for one open file, run in a thread pool strictly in order, several jobs queued at once.

A writer that waited for each batch before handing over the next would stall the event loop on every thread
hand-off; on a virtual machine waking a thread costs a tenth of a millisecond or more, and a large upload
makes a thousand such trips per GiB. A lane instead queues batches: one pool thread drains the queue while the
event loop keeps receiving, and the loop waits only when more than its window is still queued.

Jobs of one lane never overlap and run in submission order (writes land at the file's offset, hashes update
in sequence). After a job raises, the lane runs no further job: each of them fails with that error, so no
byte is ever written past a failed write.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from upload_service import complete


class DiskLane:
    """An ordered queue of blocking jobs drained by at most one thread of ``pool`` at a time."""

    def __init__(self, pool: Executor) -> None:
        self._pool = pool
        self._jobs: deque[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = deque()
        self._lock = threading.Lock()
        self._draining = False
        self._error: BaseException | None = None

    def submit(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Queue ``function(*args)``; the future completes (in the caller's loop) when it has run."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._jobs.append((function, args, future))
            start, self._draining = not self._draining, True
        if start:
            self._pool.submit(self._drain, loop)
        return future

    async def idle(self) -> None:
        """Wait until every job queued so far has run, even if the caller is cancelled meanwhile.

        The futures ``submit`` returns can be cancelled while their job still runs; a clean-up that is about
        to close the file must wait for the thread itself, which this marker job (queued last) does.
        """
        await complete(self.submit(_nothing))

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._draining = False
                    return
                function, args, future = self._jobs.popleft()
            if self._error is not None and function is not _nothing:
                outcome: tuple[bool, Any] = (False, self._error)
            else:
                try:
                    outcome = (True, function(*args))
                except BaseException as error:  # handed to the awaiting coroutine, which decides
                    self._error = error
                    outcome = (False, error)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, future, outcome)


def _nothing() -> None:
    return None


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # cancelled by its caller
        return
    succeeded, value = outcome
    if succeeded:
        future.set_result(value)
    else:
        future.set_exception(value)
