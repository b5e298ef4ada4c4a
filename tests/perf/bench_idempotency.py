"""What an ``Idempotency-Key`` costs a small upload: 1 KiB raw PUTs in a row from one client (one connection), with a
new key each, without a key, and repeated with a key already answered (a replay). These take the raw-upload lane
below Quart; the kinds ending in ``Quart`` send a cookie along, which keeps them off it, and show what the lane
saves with a key and without.

With ``--load-seconds`` it then puts the service under load as ``bench_peers`` does (10 KiB PUTs over 32
connections), with a new key per request, as every request has behind the shipped nginx config, and without,
in alternating rounds: where a key's cost shows under concurrency.

    uv run python -m tests.perf.bench_idempotency [--requests 200] [--rounds 3] [--durability full]
        [--load-seconds 5]

The three kinds take turns, round after round, so a machine whose speed drifts (a shared VM) drifts under all of
them alike; figures are the median and 90th percentile of every request of a kind, and the server's CPU time
(user + system) per request. The service runs as users run it (``upload-service``, one worker) on local disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.perf.harness import cpu_seconds, machine, service
from tests.perf.load import put_load
from tests.servers import TOKENS

BODY = b"k" * 1024


def timed(client: httpx.Client, kind: str, count: int, answered: list[str]) -> list[float]:
    """``count`` PUTs of ``kind``: their wall times (seconds)."""
    times = []
    for n in range(count):
        headers, name = {}, f"f{n}.bin"
        if kind.endswith(", Quart"):
            headers["Cookie"] = "bench=1"
        if kind.startswith("new key"):
            headers["Idempotency-Key"] = f'"{uuid.uuid4()}"'
        elif kind == "replay":
            headers["Idempotency-Key"], name = answered[n % len(answered)], f"f{n % len(answered)}.bin"
        started = time.perf_counter()
        response = client.put(f"/api/files/{name}", content=BODY, headers=headers)
        times.append(time.perf_counter() - started)
        if response.status_code != 201:
            raise RuntimeError(f"{kind}: {response.status_code} {response.text}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--durability", default="full", choices=["full", "relaxed"])
    parser.add_argument("--dir", default=None, help="where UPLOAD_DIR goes (default: a temporary folder)")
    parser.add_argument("--load-seconds", type=float, default=0, help="then 10 KiB PUTs at 32 connections, keyed "
                        "and not, this long per round (0: skip)")
    args = parser.parse_args()
    kinds = ["no key", "no key, Quart", "new key", "new key, Quart", "replay"]
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpu: dict[str, float] = dict.fromkeys(kinds, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-idempotency-", dir=args.dir) as tmp, \
            service(Path(tmp), durability=args.durability) as server, \
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKENS['alice']}"},
                         timeout=30) as client:
        answered = []
        for n in range(20):  # keys whose answers the replays get; also warms the server up
            key = f'"replayed-{n}"'
            client.put(f"/api/files/f{n}.bin", content=BODY, headers={"Idempotency-Key": key})
            answered.append(key)
        for _ in range(args.rounds):
            for kind in kinds:
                before = cpu_seconds(server.process.pid)
                taken = timed(client, kind, args.requests, answered)
                cpu[kind] += cpu_seconds(server.process.pid) - before
                times[kind] += taken
    print(f"{machine()}; load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"1 KiB raw PUTs, one client, DURABILITY={args.durability}, {args.rounds} x {args.requests} per kind")
    for kind in kinds:
        ms = sorted(t * 1000 for t in times[kind])
        print(f"{kind:14}  median {statistics.median(ms):5.2f} ms  p90 {ms[int(len(ms) * 0.9)]:5.2f} ms  "
              f"server CPU {cpu[kind] * 1000 / len(ms):5.2f} ms/request")
    if args.load_seconds:
        under_load(args)


def under_load(args: argparse.Namespace) -> None:
    """Requests per second and server CPU per request at 32 connections, a new key per request and none."""
    figures: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    headers = {"Authorization": f"Bearer {TOKENS['alice']}", "Content-Type": "application/octet-stream"}
    for _ in range(args.rounds):
        for keyed in (False, True):
            with tempfile.TemporaryDirectory(prefix="bench-idempotency-", dir=args.dir) as tmp, \
                    service(Path(tmp), durability=args.durability) as server:
                port = int(server.url.rsplit(":", 1)[1])
                load = (("127.0.0.1", port, "/api/files/small.bin", headers, b"s" * 10240, 32))
                asyncio.run(put_load(*load, 1.5, keyed=keyed))  # warm up
                before = cpu_seconds(server.process.pid)
                result = asyncio.run(put_load(*load, args.load_seconds, keyed=keyed))
                if result["errors"]:
                    raise RuntimeError(f"{result['errors']} errors")
                figures[keyed].append((result["rps"], (cpu_seconds(server.process.pid) - before) * 1000
                                       / result["requests"]))
    print(f"10 KiB PUTs, 32 connections, {args.rounds} rounds of {args.load_seconds:g} s each; load average (1 min) "
          f"{os.getloadavg()[0]:.2f}")
    for keyed, runs in figures.items():
        print(f"{'a new key each' if keyed else 'no key':14}  requests/s {statistics.median(r for r, _ in runs):6.0f}"
              f"  server CPU {statistics.median(c for _, c in runs):5.2f} ms/request (medians)")


if __name__ == "__main__":
    main()
