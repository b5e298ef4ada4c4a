"""The full multi-instance run: 200 tus clients for 60 s through nginx onto three instances (S3, Redis), one
instance killed half-way, then every finished upload downloaded and its sha256 checked.

    uv run python -m tests.perf.multi_instance_load [--clients 200] [--seconds 60]

CI runs the same with 50 clients for 10 s (tests/test_multi_instance.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.cluster import Cluster
from tests.cluster_load import run_load, verify
from tests.redis_server import RedisServer
from tests.s3 import S3Server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--keep", help="keep logs (instances, nginx, Redis, SeaweedFS) in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        root = Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        redis, s3 = RedisServer.start(root), S3Server.start(root)
        cluster = Cluster.start(root / "cluster", redis, s3.bucket())
        try:
            result = run_load(cluster.url, args.clients, args.seconds,
                              during=lambda: cluster.kill(cluster.instances[1]))
            ids = verify(cluster.url, result)
            stored = sorted(key.rsplit("/", 1)[1] for key in cluster.bucket.records("files/"))
            errors = cluster.server_errors()
            in_flight = sum(1 for entry in cluster.nginx.access_log() if entry[2] >= 500) - len(errors)
        finally:
            cluster.stop()
            redis.stop()
            s3.stop()
    print(f"clients {args.clients}, {result.seconds:.1f} s, one of three instances killed half-way")
    print(f"finished uploads   {len(result.finished)} ({result.bytes / 2**20:.1f} MiB, "
          f"{result.bytes / 2**20 / result.seconds:.1f} MiB/s, {len(result.finished) / result.seconds:.1f} uploads/s)")
    print(f"resumed by a new client after a failure  {result.resumed}")
    print(f"given up           {len(result.failed)}")
    print(f"sha256 verified    {len(ids)}; files in the bucket {len(stored)}; "
          f"same set: {stored == sorted(ids)}; duplicates: {len(ids) - len(set(ids))}")
    print(f"5xx from the killed instance (in flight) {in_flight}; other 5xx {len(errors)}")
    if result.failed or errors or stored != sorted(ids):
        raise SystemExit("FAILED: " + "; ".join(result.failed[:5] + [str(e) for e in errors[:5]]))


if __name__ == "__main__":
    main()
