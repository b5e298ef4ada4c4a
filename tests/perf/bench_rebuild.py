"""How fast the local storage's index is rebuilt from the disk: files indexed per second, at N files of one owner.

The files are seeded as ``bench_listing`` seeds them (the on-disk layout written directly, a tenth more as
temporary uploads); each round then deletes ``.index`` and times ``rebuild`` in this process, with no server and no
background rebuild beside it. The load average is printed beside each round: the figures mean little on a busy
machine unless rounds of the versions compared are interleaved.

    uv run python -m tests.perf.bench_rebuild [--files 100000] [--rounds 2] [--base DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
from pathlib import Path

from tests.perf.bench_listing import seed
from tests.perf.harness import machine, workdir
from upload_service.builtin.local_storage import LocalStorage
from upload_service.builtin.local_storage.reindex import rebuild


async def one_round(upload_dir: Path) -> tuple[int, float, float]:
    """Objects indexed, seconds, and the load average before the round."""
    shutil.rmtree(upload_dir / ".index", ignore_errors=True)
    storage = LocalStorage(upload_dir, "relaxed")
    storage._rebuild_if_needed = storage._schedule_rebuild = lambda: None  # type: ignore[method-assign]
    await storage.open()
    try:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        count = await storage.threads.run(rebuild, storage.index)
        return count, time.perf_counter() - started, load
    finally:
        await storage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--base", help="folder for the work (default: a temporary folder)")
    args = parser.parse_args()
    print(f"bench_rebuild on {machine()}", flush=True)
    base = workdir(args.base)
    try:
        _, seeded = seed(base / "uploads", args.files)
        print(f"seeded {args.files:,} files (+{max(args.files // 10, 100):,} temporary) in {seeded:.1f} s", flush=True)
        for _ in range(args.rounds):
            count, took, load = asyncio.run(one_round(base / "uploads"))
            print(f"rebuilt {count:,} objects in {took:.2f} s: {count / took:,.0f} files/s "
                  f"(load average {load:.1f} before, {os.getloadavg()[0]:.1f} after)", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
