"""The threads one local storage does its blocking disk work in: started by ``open``, shut down by ``close``.

Not asyncio's default pool (cores + 4 threads): many small uploads at once each wait on fsync, and with a
handful of threads they would queue behind each other. One pool per storage, so two services in one process
never share one by accident, and nothing starts at import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

WORKERS = 32


class IOThreads:
    """A thread pool that exists between ``open`` and ``close`` (which may follow each other more than once:
    the CLI checks the storage in one event loop and serves in another)."""

    def __init__(self, workers: int = WORKERS) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None

    def open(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="local-storage")

    async def close(self) -> None:
        """Let the jobs already handed over finish (off the event loop), then end the threads."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> Executor:
        if self._pool is None:
            raise RuntimeError("the local storage is not open: call its open() first")
        return self._pool

    def run(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run blocking disk work in one of the threads."""
        return asyncio.get_running_loop().run_in_executor(self.pool, function, *args)
