"""Where the time of a small upload goes: 10 KiB PUTs at concurrency 32 against the service and against
stripped-down servers on the same Hypercorn, each adding one layer (see ``ceiling_apps``).

    uv run python -m tests.perf.bench_small_ceiling [--seconds 8] [--rounds 3]

The servers take turns, round after round, so a machine whose speed drifts minute to minute (a shared VM)
drifts under all of them alike; figures are medians over the rounds. Server CPU is user + system time of the
server's processes per request: what each layer costs, whatever the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from tests.perf.harness import cpu_seconds, machine, service
from tests.perf.load import put_load
from tests.servers import ROOT, TOKENS, free_port, wait_until_up

BODY = b"s" * 10240
CONCURRENCY = 32


@contextmanager
def bare(app: str, **env: str) -> Iterator[tuple[int, int]]:
    """Hypercorn (uvloop, one worker, as the service runs) serving ``tests.perf.ceiling_apps:<app>``."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "-k", "uvloop", "-b", f"127.0.0.1:{port}",
         f"tests.perf.ceiling_apps:{app}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", process)
        yield process.pid, port
    finally:
        process.terminate()
        process.wait()


@contextmanager
def the_service(**settings: str) -> Iterator[tuple[int, int]]:
    with tempfile.TemporaryDirectory(prefix="ceiling-service-") as tmp, service(Path(tmp), **settings) as server:
        yield server.process.pid, int(server.url.rsplit(":", 1)[1])


def variants(upload_dir: str) -> dict[str, Callable[[], AbstractContextManager[tuple[int, int]]]]:
    return {
        "Hypercorn + bare ASGI app (reads the body, answers JSON)": lambda: bare("asgi"),
        "+ sha256 of the body": lambda: bare("asgi_sha256"),
        "Hypercorn + bare Quart app": lambda: bare("quart"),
        "bare ASGI + a durable create's system calls, inline in one thread trip": lambda: bare(
            "asgi_syscalls", CEILING_UPLOAD_DIR=upload_dir),
        "bare ASGI + the local storage's durable commit": lambda: bare("asgi_storage", CEILING_UPLOAD_DIR=upload_dir),
        "bare ASGI + the local storage, DURABILITY=relaxed": lambda: bare(
            "asgi_storage", CEILING_UPLOAD_DIR=upload_dir, CEILING_RELAXED="1"),
        "the service (auth, limits, hashing, metadata, metrics)": lambda: the_service(),
        "the service, DURABILITY=relaxed": lambda: the_service(durability="relaxed"),
        "the service, WORKERS=2": lambda: the_service(workers="2"),
    }


def run_one(start: Callable[[], AbstractContextManager[tuple[int, int]]], seconds: float) -> tuple[float, float, float]:
    headers = {"Authorization": f"Bearer {TOKENS['alice']}", "Content-Type": "application/octet-stream"}
    with start() as (pid, port):
        asyncio.run(put_load("127.0.0.1", port, "/api/files/small.bin", headers, BODY, CONCURRENCY, 2))  # warm up
        before = cpu_seconds(pid)
        result = asyncio.run(put_load("127.0.0.1", port, "/api/files/small.bin", headers, BODY, CONCURRENCY, seconds))
        cpu = cpu_seconds(pid) - before
    if result["errors"]:
        raise RuntimeError(f"{result['errors']} requests failed")
    return result["rps"], result["p99_ms"], cpu / result["requests"] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ceiling-", dir="/tmp") as upload_dir:
        table = variants(upload_dir)
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in table}
        for _ in range(args.rounds):
            for name, start in table.items():
                figures[name].append(run_one(start, args.seconds))
    print(f"machine: {machine()}; 10 KiB PUTs, concurrency {CONCURRENCY}, {args.seconds:g} s each, "
          f"medians of {args.rounds} interleaved rounds\n")
    print("| server | requests/s | p99 | server CPU per request |\n| --- | --- | --- | --- |")
    for name, runs in figures.items():
        rps, p99, cpu = (statistics.median(run[i] for run in runs) for i in range(3))
        print(f"| {name} | {rps:,.0f} | {p99:.0f} ms | {cpu:.2f} ms |")


if __name__ == "__main__":
    main()
