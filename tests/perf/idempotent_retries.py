"""Clients that retry with ``Idempotency-Key`` through nginx onto three instances (S3, Redis), instances killed
with SIGKILL under load and started again: raw PUTs, JSON batches and persists, each sent again with its key
until it has an answer. Then every answered file is downloaded and its sha256 checked, and the bucket must hold
exactly those files: none lost, none stored twice.

    uv run python -m tests.perf.idempotent_retries [--clients 20] [--seconds 20] [--kills 3]

Counted: requests retried (transport errors, 502/503/504 while an instance was down, 409 while a dead holder's
lock lasted) and retries recognised (answered with ``Idempotent-Replayed: true``).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.cluster import Cluster
from tests.cluster_load import USERS, run_clients
from tests.redis_server import RedisServer
from tests.s3 import S3Server
from tests.servers import TOKENS, start_server

RETRY_STATUSES = {423, 429, 500, 502, 503, 504}  # a 5xx keeps nothing: the retry (same key) may do it


def try_again(answer: httpx.Response | None) -> bool:
    """No answer, an instance down, or the first attempt's lock still held (a dead holder's, until it expires)."""
    return answer is None or answer.status_code in RETRY_STATUSES or (
        answer.status_code == 409 and "still in progress" in answer.text)


@dataclass
class Tally:
    expected: dict[str, tuple[str, str]] = field(default_factory=dict)  # file id -> (user, sha256)
    operations: int = 0
    retried: int = 0  # operations that needed more than one attempt
    retries: int = 0
    replayed: int = 0  # retries answered with the first answer
    failed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send(client: httpx.Client, tally: Tally, method: str, path: str, **body: Any) -> httpx.Response:
    """One operation with a key of its own, sent again until it has an answer that is not 'try again'."""
    headers = {"Idempotency-Key": f'"{uuid.uuid4()}"', **body.pop("headers", {})}
    for attempt in range(60):
        try:
            answer = client.request(method, path, headers=headers, **body)
        except httpx.TransportError:
            answer = None
        if answer is not None and not try_again(answer):
            with tally.lock:
                tally.operations += 1
                tally.retried += attempt > 0
                tally.retries += attempt
                tally.replayed += answer.headers.get("Idempotent-Replayed") == "true"
            return answer
        time.sleep(0.2)
    raise RuntimeError(f"{method} {path}: no answer after 60 attempts")


def one_operation(client: httpx.Client, user: str, rng: random.Random, tally: Tally) -> None:
    kind = rng.choice(("raw", "raw", "json", "persist"))
    datas = [rng.randbytes(rng.choice((1, 1000, 30_000, 300_000, 1_000_000)))] if kind == "raw" else [
        rng.randbytes(rng.choice((10, 5000, 50_000))) for _ in range(rng.randint(1, 4))]
    items = [{"filename": f"{kind}-{n}.bin", "content": base64.b64encode(data).decode()}
             for n, data in enumerate(datas)]
    if kind == "raw":
        answer = send(client, tally, "PUT", "/api/files/raw.bin", content=datas[0])
        files = [answer.json()] if answer.status_code == 201 else []
    elif kind == "json":
        answer = send(client, tally, "PUT", "/api/upload", json=items)
        files = answer.json()["files"] if answer.status_code == 201 else []
    else:
        made = send(client, tally, "PUT", "/api/upload_temporary", json=items)
        tokens = [file["token"] for file in made.json()["files"]] if made.status_code == 201 else []
        answer = send(client, tally, "POST", "/api/persist", json={"tokens": tokens}) if tokens else made
        files = answer.json()["files"] if answer.status_code == 201 else []
    if not files:
        with tally.lock:
            tally.failed.append(f"{kind}: {answer.status_code} {answer.text[:200]}")
        return
    with tally.lock:
        for file, data in zip(files, datas, strict=True):
            tally.expected[file["id"]] = (user, hashlib.sha256(data).hexdigest())


def verify(cluster: Cluster, tally: Tally) -> tuple[int, list[str], list[str]]:
    """(files whose bytes downloaded intact, answered files the bucket lacks, files in the bucket nobody was
    answered with: stored twice)."""
    stored = {key.rsplit("/", 1)[1] for key in cluster.bucket.records("files/")}
    clients = {user: cluster.client(user) for user in USERS}
    intact = 0
    for file_id, (user, sha256) in tally.expected.items():
        download = clients[user].get(f"/api/files/{file_id}/content")
        intact += download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == sha256
    return intact, sorted(set(tally.expected) - stored), sorted(stored - set(tally.expected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--keep", help="keep logs (instances, nginx, Redis, moto) in this folder")
    args = parser.parse_args()
    tally = Tally()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep or scratch)
        root.mkdir(parents=True, exist_ok=True)
        redis, s3 = RedisServer.start(root), S3Server.start(root)
        bucket = s3.bucket()
        cluster = Cluster.start(root / "cluster", redis, bucket)
        shared = {**bucket.settings(), "locker": "redis", "redis_url": redis.url, "redis_lock_ttl": "3s",
                  "forwarded_allow_ips": "127.0.0.1"}

        def kill_and_restart() -> None:
            """SIGKILL an instance every seconds/(kills+1), and start it again on its port a second later."""
            for number in range(args.kills):
                time.sleep(max(0.0, args.seconds / (args.kills + 1) - 1))
                victim = cluster.instances[number % len(cluster.instances)]
                cluster.kill(victim)
                time.sleep(1)
                folder = root / f"restarted-{number}"
                folder.mkdir()
                port = int(victim.url.rsplit(":", 1)[1])
                cluster.instances[cluster.instances.index(victim)] = start_server(folder, port=port, **shared)

        def client(number: int, deadline: float) -> None:
            rng = random.Random(number)
            user = USERS[number % len(USERS)]
            with httpx.Client(base_url=cluster.url, headers={"Authorization": f"Bearer {TOKENS[user]}"},
                              timeout=60) as http:
                while time.monotonic() < deadline:
                    one_operation(http, user, rng, tally)

        try:
            killer = threading.Thread(target=kill_and_restart, daemon=True)
            killer.start()
            seconds = run_clients(args.clients, args.seconds, client)
            killer.join()
            intact, lost, twice = verify(cluster, tally)
        finally:
            cluster.stop()
            redis.stop()
            s3.stop()
    print(f"clients {args.clients}, {seconds:.1f} s, {args.kills} instances killed (SIGKILL) and started again")
    print(f"operations answered {tally.operations}; retried {tally.retried} ({tally.retries} retries); "
          f"retries answered with the first answer (Idempotent-Replayed) {tally.replayed}")
    print(f"files answered {len(tally.expected)}; sha256 verified {intact}; lost {len(lost)}; "
          f"stored twice {len(twice)}")
    print(f"given up {len(tally.failed)} {tally.failed[:3]}")
    if lost or twice or intact != len(tally.expected) or tally.failed:
        raise SystemExit("FAILED")


if __name__ == "__main__":
    main()
