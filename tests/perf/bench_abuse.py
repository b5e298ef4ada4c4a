"""What the abuse controls cost: 10 KiB raw PUTs per second with each control on, and libmagic's sniffing time.

    uv run python -m tests.perf.bench_abuse [--seconds 10] [--concurrency 16]

Every upload comes from one identity (the worst case for quotas and slots: all of its ledger changes queue on
one lock); the limits are set high enough that nothing is refused. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from tests.perf.harness import machine, service, workdir
from tests.perf.load import put_load
from tests.redis_server import RedisServer
from tests.servers import TOKENS
from upload_service.content_types import Sniffer

BODY = os.urandom(10 * 1024)
HIGH = {"user_quota_bytes": "1TiB", "user_quota_files": "100000000"}


SNIFFER = Sniffer()


def sniff_ms(data: bytes, rounds: int = 200) -> float:
    SNIFFER.identify(data)
    started = time.perf_counter()
    for _ in range(rounds):
        SNIFFER.identify(data)
    return (time.perf_counter() - started) / rounds * 1000


def run(name: str, seconds: float, concurrency: int, **settings: str) -> None:
    with service(workdir(), **settings) as server:
        port = int(server.url.rsplit(":", 1)[1])
        headers = {"Authorization": f"Bearer {TOKENS['alice']}"}
        figures = asyncio.run(put_load("127.0.0.1", port, "/api/files/bench.bin", headers, BODY, concurrency, seconds))
    print(f"| {name} | {figures['rps']:,.0f} | {figures['p50_ms']:.1f} ms | {figures['p99_ms']:.1f} ms "
          f"| {figures['errors']:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {machine()}; {args.concurrency} connections, {args.seconds:g} s each, 10 KiB bodies\n")
    text = b"a line of plain text, the slowest kind for libmagic\n" * 1300
    print(f"libmagic on the first 64 KiB: text {sniff_ms(text[:65536]):.1f} ms, random bytes "
          f"{sniff_ms(os.urandom(65536)):.1f} ms, PNG header {sniff_ms(bytes.fromhex('89504e470d0a1a0a') * 8):.2f} ms "
          f"(median of single calls: {statistics.median([sniff_ms(BODY, 1) for _ in range(50)]):.2f} ms for 10 KiB)\n")
    print("| controls | uploads/s | p50 | p99 | errors |\n|---|---|---|---|---|")
    run("none (content type still sniffed)", args.seconds, args.concurrency)
    run("content-type allowlist", args.seconds, args.concurrency, allowed_content_types="application/*")
    run("quotas, LOCKER=file", args.seconds, args.concurrency, **HIGH)
    run("quotas + MAX_CONCURRENT_UPLOADS=64, LOCKER=file", args.seconds, args.concurrency,
        max_concurrent_uploads="64", **HIGH)
    redis = RedisServer.start(workdir())
    try:
        redis_settings = {"locker": "redis", "redis_url": redis.url}
        run("RATE_LIMIT=1000000/minute in Redis", args.seconds, args.concurrency, rate_limit="1000000/minute",
            **redis_settings)
        run("quotas + slots, LOCKER=redis", args.seconds, args.concurrency, max_concurrent_uploads="64",
            **HIGH, **redis_settings)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
