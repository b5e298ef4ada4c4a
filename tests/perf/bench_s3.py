"""S3 benchmark: a 1 GiB raw PUT to the service on S3 (moto's server mode on 127.0.0.1), next to local disk.

    uv run python -m tests.perf.bench_s3 [--size-mib 1024] [--repeat 3]

Prints throughput and the service's peak RSS (VmHWM of the server process, reset before each run) for the
same file on both backends in the same run, and moto's peak RSS for scale. moto keeps objects in its own
process, so the S3 figure measures the service's S3 path plus a local S3 server sharing the same cores,
not the network to a real store.
"""

from __future__ import annotations

import argparse
import shutil

from tests.perf.harness import AUTH, clear_uploads, curl, machine, make_file, measure, peak_rss_mib, service, workdir
from tests.s3 import S3Server


def _delete_uploaded(server) -> None:
    """Remove what the last run stored, through the API (S3) so the next run starts from the same state."""
    client = server.client()
    for file in client.get("/api/files").json()["files"]:
        client.delete(f"/api/files/{file['id']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = workdir("/tmp")
    size = args.size_mib * 1024 * 1024
    big = make_file(base / "big.bin", size)
    put = ["-T", str(big), "-H", AUTH]
    print(f"machine: {machine()}; file {args.size_mib} MiB; medians of {args.repeat}\n")
    print("| what | throughput | time | server CPU | server peak RSS |\n| --- | --- | --- | --- | --- |")
    with service(base / "local") as server:
        measure("raw PUT, local disk", server.process.pid, size, args.repeat,
                lambda: curl([*put, f"{server.url}/api/files/big.bin"]), after=lambda: clear_uploads(server.upload_dir))
    moto = S3Server.start(base)
    try:
        bucket = moto.bucket()
        with service(base / "s3", **bucket.settings()) as server:
            measure("raw PUT, S3 (moto server)", server.process.pid, size, args.repeat,
                    lambda: curl([*put, f"{server.url}/api/files/big.bin"]), after=lambda: _delete_uploaded(server))
        print(f"\nmoto server peak RSS: {peak_rss_mib(moto.process.pid):.0f} MiB (the S3 server, for scale)")
    finally:
        moto.stop()
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
