"""Webhooks benchmark: deliveries per second and their lag, from a real service (local disk) to a real receiver
on 127.0.0.1 that verifies every signature with the `standardwebhooks` package.

    uv run --extra test python -m tests.perf.bench_webhooks [--events 500] [--concurrency 8] [--backlog N]

- live: ``--events`` uploads from ``--concurrency`` clients while the receiver is up; lag is from the upload's
  answer to the receiver's verified delivery.
- backlog: ``--events`` uploads while the receiver is down, then the receiver comes up: how fast the outbox
  drains (the retry back-off is set to 0.05 s doubling to 0.5 s, so at most 0.5 s of it is waiting).
- ``--backlog N`` instead: the live phase on ``upload-service`` as a process of its own, first over an empty
  outbox, then over N entries for another endpoint that is down (none due for an hour): the server's CPU per
  upload (its event and delivery included), which must not grow with the backlog (issue 21), and its CPU with
  no upload (the passes over the outbox every ``WEBHOOK_POLL_INTERVAL``, 1 s here), in % of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.faults import wait_for
from tests.perf.harness import cpu_seconds
from tests.servers import TOKENS, start_server
from tests.test_webhooks import FAST, SECRET
from tests.webhook_receiver import Receiver, closed_port
from upload_service.testing import TEST_TOKEN, start_service

IDLE = 5.0  # seconds the server's CPU is read without uploads
SETTINGS = {**FAST, "WEBHOOK_BACKOFF": "0.05s", "WEBHOOK_BACKOFF_MAX": "0.5s", "WEBHOOK_POLL_INTERVAL": "1s"}


def uploads(url: str, count: int, concurrency: int, token: str = TEST_TOKEN) -> dict[str, float]:
    """Upload ``count`` small files; the time each was answered, by file id."""
    answered: dict[str, float] = {}

    def one(number: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
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


def write_backlog(folder: Path, settings: dict[str, str], down: str, entries: int) -> None:
    """``entries`` outbox entries for the endpoint ``down``, failed 12 times and not due for an hour, written by
    an in-process service on ``folder`` (stopped before the measured one starts there)."""
    writer = start_service(folder, plugin_settings=settings)
    try:
        outbox = writer.service.state("webhooks")["outbox"]
        failing = {"id": "msg_old", "type": "file.deleted", "created": time.time(), "claimed_until": 0,
                   "endpoints": {down: {"attempts": 12, "next": time.time() + 3600, "error": "ConnectError",
                                        "dead": False}}}
        old = time.time_ns() - 10**9  # older than the uploads' events: the listing gives them first

        async def write() -> None:
            for first in range(0, entries, 200):
                await asyncio.gather(*(outbox._write(f"webhooks/outbox/{old:x}{n:012x}", b"{}", failing)
                                       for n in range(first, min(first + 200, entries))))

        writer.run(write(), timeout=600)
    finally:
        writer.stop()


def over_backlog(base: Path, entries: int, events: int, concurrency: int) -> None:
    """The server's CPU a second with no upload (the loop's passes over the outbox), then per upload (its event
    and delivery included), while the outbox holds ``entries`` entries for another endpoint, which is down."""
    receiver = Receiver(SECRET)
    down = f"http://127.0.0.1:{closed_port()}/hook"
    settings = {**SETTINGS, "WEBHOOK_URLS": receiver.url,
                "WEBHOOK_ENDPOINTS": f'[{{"url": "{down}", "events": ["file.deleted"]}}]'}
    folder, logs = base / f"over-{entries}", base / f"over-{entries}-logs"
    folder.mkdir()
    logs.mkdir()
    if entries:
        write_backlog(folder, settings, down, entries)
    server = start_server(logs, fresh=True, upload_dir=str(folder), **settings)
    try:
        uploads(server.url, 20, concurrency, TOKENS["alice"])  # warm up: imports, first passes
        assert wait_for(lambda: len(receiver.deliveries) >= 20, timeout=60)
        idle = cpu_seconds(server.process.pid)
        time.sleep(IDLE)
        before, started = cpu_seconds(server.process.pid), time.time()
        idle = (before - idle) / IDLE
        answered = uploads(server.url, events, concurrency, TOKENS["alice"])
        assert wait_for(lambda: len(receiver.deliveries) >= events + 20, timeout=300)
        cpu, took = cpu_seconds(server.process.pid) - before, time.time() - started
        arrived = {d.payload["data"]["id"]: d.at for d in receiver.deliveries}
        lags = sorted(arrived[file_id] - answered[file_id] for file_id in answered)
        print(f"| {entries} | {idle * 100:.1f} % | {events} | {cpu / events * 1000:.2f} ms | {events / took:.0f}/s | "
              f"{statistics.median(lags) * 1000:.0f} ms | {lags[int(len(lags) * 0.95) - 1] * 1000:.0f} ms | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)
    finally:
        server.stop()
        receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backlog", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        for name in ("httpx", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)  # a line per request, not a figure
        if args.backlog is not None:
            print("| backlog | idle CPU | uploads | CPU per upload | uploads delivered | median lag | p95 lag | load |")
            print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for entries in (0, args.backlog):
                over_backlog(base, entries, args.events, args.concurrency)
            return
        (base / "live").mkdir()
        (base / "backlog").mkdir()
        print("| phase | delivered | deliveries | median lag | p95 lag | max lag | bad signatures |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        live(base, args.events, args.concurrency)
        backlog(base, args.events, args.concurrency)


if __name__ == "__main__":
    main()
