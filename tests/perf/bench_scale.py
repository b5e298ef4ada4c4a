"""Scaling figures: 10 KiB uploads per second and big-upload throughput with 1, 2 and 3 instances behind nginx.

Everything runs on this machine: SeaweedFS's S3 gateway, Redis, the instances and nginx share its cores, so the
figures show how the service spreads over instances here, not what separate machines would give.

    uv run python -m tests.perf.bench_scale [--seconds 10] [--concurrency 32] [--big-mib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

from tests.cluster import Cluster
from tests.perf.load import put_load
from tests.redis_server import RedisServer
from tests.s3 import S3Server
from tests.servers import TOKENS

AUTH = {"Authorization": f"Bearer {TOKENS['alice']}"}


def small_uploads(cluster: Cluster, seconds: float, concurrency: int) -> dict[str, float]:
    port = int(cluster.url.rsplit(":", 1)[1])
    return asyncio.run(put_load("127.0.0.1", port, "/api/files/small.bin", AUTH, os.urandom(10 * 1024),
                                concurrency, seconds))


def big_upload(cluster: Cluster, mib: int, streams: int, folder: Path) -> float:
    """MiB/s for ``mib`` MiB sent as ``streams`` parallel raw PUTs (curl) through nginx."""
    part = folder / "part.bin"
    with part.open("wb") as out:
        block = os.urandom(1024 * 1024)
        for _ in range(mib // streams):
            out.write(block)
    started = time.perf_counter()
    processes = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(part),
                                   "-H", f"Authorization: Bearer {TOKENS['alice']}",
                                   f"{cluster.url}/api/files/big-{number}.bin"], stdout=subprocess.PIPE)
                 for number in range(streams)]
    codes = [process.communicate()[0].decode() for process in processes]
    elapsed = time.perf_counter() - started
    part.unlink()
    if set(codes) != {"201"}:
        raise RuntimeError(f"big uploads answered {codes}")
    return mib / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--instances", default="1,2,3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        redis, s3 = RedisServer.start(root), S3Server.start(root)
        try:
            print(f"{'instances':>9} {'10KiB req/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
                  f"{args.big_mib} MiB in {args.streams} streams, MiB/s")
            for size in (int(n) for n in args.instances.split(",")):
                bucket = s3.bucket()
                cluster = Cluster.start(root / f"cluster-{size}", redis, bucket, size=size)
                try:
                    small = small_uploads(cluster, args.seconds, args.concurrency)
                    big = big_upload(cluster, args.big_mib, args.streams, root)
                finally:
                    cluster.stop()
                    client = s3.client()  # free the disk before the next round
                    for key in bucket.keys():  # noqa: SIM118 (a Bucket is not a dict: keys() lists its objects)
                        client.delete_object(Bucket=bucket.name, Key=bucket.prefix + key)
                print(f"{size:>9} {small['rps']:>12.0f} {small['p50_ms']:>7.1f} {small['p99_ms']:>7.1f} "
                      f"{small['errors']:>6.0f} {big:>10.1f}", flush=True)
        finally:
            redis.stop()
            s3.stop()


if __name__ == "__main__":
    main()
