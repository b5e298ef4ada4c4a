"""Several Hypercorn worker processes on one listening socket, each replaced when it dies.

Hypercorn's own multi-worker runner stops the whole server when one worker exits abnormally (a kill -9, the
kernel's out-of-memory killer): the other workers are told to shut down and nothing is restarted. Here the
master keeps the socket, starts a new worker in place of a dead one, and stops only on SIGTERM/SIGINT, or
when workers keep dying right after they start (a crash loop that restarting cannot cure).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from hypercorn.asyncio.run import asyncio_worker, uvloop_worker
from hypercorn.config import Config

from .hypercorn_tuning import tune_hypercorn

log = logging.getLogger("upload_service")
QUICK_DEATH_SECONDS = 5.0  # a worker that dies sooner than this after starting counts towards a crash loop
MAX_QUICK_DEATHS = 5


class WorkerPool:
    """``workers`` processes serving ``config``'s sockets; ``run()`` returns the server's exit code."""

    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._context = get_context("spawn")
        self._shutdown = self._context.Event()
        self._stopping = False
        self._started: dict[BaseProcess, float] = {}
        self._quick_deaths = 0

    def run(self) -> int:
        sockets = self.config.create_sockets()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited: a terminal's Ctrl-C reaches the master only
        processes = [self._spawn(sockets) for _ in range(self.workers)]
        for name in ("SIGINT", "SIGTERM"):
            signal.signal(getattr(signal, name), self._stop)
        exit_code = 0
        while not self._stopping:
            wait([process.sentinel for process in processes], timeout=1.0)
            for index, process in enumerate(processes):
                if process.exitcode is None or self._stopping:
                    continue
                if not self._replaceable(process):
                    self._stop()
                    exit_code = 1
                    break
                processes[index] = self._spawn(sockets)
        self._join(processes)
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
        return exit_code

    def _spawn(self, sockets: Any) -> BaseProcess:
        process = self._context.Process(target=_serve_worker, kwargs={
            "config": self.config, "sockets": sockets, "shutdown_event": self._shutdown})
        process.daemon = True
        process.start()
        self._started[process] = time.monotonic()
        return process

    def _replaceable(self, process: BaseProcess) -> bool:
        """Log the death, forget the worker's live metrics; False once it looks like a crash loop."""
        process.join()
        lived = time.monotonic() - self._started.pop(process, 0.0)
        log.error("worker %s exited with %s after %.0f s; starting another", process.pid, process.exitcode, lived)
        _forget_metrics(process.pid)
        self._quick_deaths = self._quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
        if self._quick_deaths >= MAX_QUICK_DEATHS:
            log.error("%d workers died within %.0f s of starting; stopping", self._quick_deaths, QUICK_DEATH_SECONDS)
            return False
        return True

    def _stop(self, *_: Any) -> None:
        self._stopping = True
        self._shutdown.set()

    def _join(self, processes: list[BaseProcess]) -> None:
        deadline = time.monotonic() + self.config.graceful_timeout + 5
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.exitcode is None:
                process.terminate()
                process.join()
            _forget_metrics(process.pid)


def _serve_worker(*, config: Config, **kwargs: Any) -> None:
    """A worker process's entry point: the same Hypercorn tuning as a single-process server, then serve."""
    tune_hypercorn()
    worker = uvloop_worker if config.worker_class == "uvloop" else asyncio_worker
    worker(config=config, **kwargs)


def _forget_metrics(pid: int | None) -> None:
    """A dead worker's live gauges (active uploads) must not count any more."""
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
