"""Webhooks benchmark: deliveries per second and their lag, from a real service (local disk) to a real receiver
on 127.0.0.1 that verifies every signature with the `standardwebhooks` package.

    uv run --extra test python -m tests.perf.bench_webhooks [--events 500] [--concurrency 8]

- live: ``--events`` uploads from ``--concurrency`` clients while the receiver is up; lag is from the upload's
  answer to the receiver's verified delivery.
- backlog: ``--events`` uploads while the receiver is down, then the receiver comes up: how fast the outbox
  drains (the retry back-off is set to 0.05 s doubling to 0.5 s, so at most 0.5 s of it is waiting).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.faults import wait_for
from tests.test_webhooks import FAST, SECRET
from tests.webhook_receiver import Receiver, closed_port
from upload_service.testing import TEST_TOKEN, start_service

SETTINGS = {**FAST, "WEBHOOK_BACKOFF": "0.05s", "WEBHOOK_BACKOFF_MAX": "0.5s", "WEBHOOK_POLL_INTERVAL": "1s"}


def uploads(url: str, count: int, concurrency: int) -> dict[str, float]:
    """Upload ``count`` small files; the time each was answered, by file id."""
    answered: dict[str, float] = {}

    def one(number: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TEST_TOKEN}"}) as client:
            for n in range(number, count, concurrency):
                answer = client.put(f"/api/files/{n}.txt", content=b"x" * 100)
                answer.raise_for_status()
                answered[answer.json()["id"]] = time.time()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency)))
    return answered


def report(name: str, receiver: Receiver, answered: dict[str, float], started: float) -> None:
    arrived = {d.payload["data"]["id"]: d.at for d in receiver.deliveries if d.payload["type"] == "file.persisted"}
    lags = sorted(arrived[file_id] - answered[file_id] for file_id in answered)
    took = max(arrived.values()) - started
    print(f"| {name} | {len(arrived)} | {len(arrived) / took:.0f}/s | {statistics.median(lags) * 1000:.0f} ms | "
          f"{lags[int(len(lags) * 0.95) - 1] * 1000:.0f} ms | {lags[-1] * 1000:.0f} ms | {len(receiver.refused)} |")


def live(base: Path, events: int, concurrency: int) -> None:
    receiver = Receiver(SECRET)
    running = start_service(base / "live", plugin_settings={**SETTINGS, "WEBHOOK_URLS": receiver.url})
    try:
        started = time.time()
        answered = uploads(running.url, events, concurrency)
        assert wait_for(lambda: len(receiver.deliveries) >= events, timeout=300)
        report("live", receiver, answered, started)
    finally:
        running.stop()
        receiver.stop()


def backlog(base: Path, events: int, concurrency: int) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/hook"
    running = start_service(base / "backlog", plugin_settings={**SETTINGS, "WEBHOOK_URLS": url})
    try:
        answered = uploads(running.url, events, concurrency)
        started = time.time()
        receiver = Receiver(SECRET, port=port)
        try:
            assert wait_for(lambda: len(receiver.deliveries) >= events, timeout=300)
            report("backlog drain", receiver, dict.fromkeys(answered, started), started)
        finally:
            receiver.stop()
    finally:
        running.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request, not a figure
        (base / "live").mkdir()
        (base / "backlog").mkdir()
        print("| phase | delivered | deliveries | median lag | p95 lag | max lag | bad signatures |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        live(base, args.events, args.concurrency)
        backlog(base, args.events, args.concurrency)


if __name__ == "__main__":
    main()
