"""What an ``Idempotency-Key`` costs a small upload: 1 KiB raw PUTs in a row from one client (one connection), with a
new key each, without a key, and repeated with a key already answered (a replay). These take the raw-upload lane
below Quart; the kinds ending in ``Quart`` send a cookie along, which keeps them off it, and show what the lane
saves with a key and without.

    uv run python -m tests.perf.bench_idempotency [--requests 200] [--rounds 3] [--durability full]

The three kinds take turns, round after round, so a machine whose speed drifts (a shared VM) drifts under all of
them alike; figures are the median and 90th percentile of every request of a kind, and the server's CPU time
(user + system) per request. The service runs as users run it (``upload-service``, one worker) on local disk.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.perf.harness import cpu_seconds, machine, service
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


if __name__ == "__main__":
    main()
