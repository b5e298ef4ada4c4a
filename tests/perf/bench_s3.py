"""S3 benchmark: a 1 GiB raw PUT to the service on S3 (SeaweedFS's S3 gateway on 127.0.0.1) beside a direct boto3
upload of the same file to the same SeaweedFS, and local disk.

    uv run python -m tests.perf.bench_s3 [--size-mib 1024] [--repeat 3]

Prints throughput, time, CPU and peak RSS (VmHWM, reset before each run) for the same file in the same run: the
service's rows show the service's process, the direct boto3 row shows SeaweedFS's (boto3 runs in this process),
and SeaweedFS's peak RSS over the whole run is printed for scale. SeaweedFS stores on this machine's disk and
shares its cores with the service, so the S3 figures measure the service's S3 path against a local store, not
the network to a real one; the direct upload is what the same store takes from a plain client.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from boto3.s3.transfer import TransferConfig

from tests.perf.harness import AUTH, clear_uploads, curl, machine, make_file, measure, peak_rss_mib, service, workdir
from tests.s3 import Bucket, S3Server

PART = 8 * 1024 * 1024  # the service's part size, for the direct upload too


def _delete_uploaded(server) -> None:
    """Remove what the last run stored, through the API (S3) so the next run starts from the same state."""
    client = server.client()
    for file in client.get("/api/files").json()["files"]:
        client.delete(f"/api/files/{file['id']}")


def _direct_upload(bucket: Bucket, path: Path, concurrency: int) -> float:
    """boto3's managed multipart upload of ``path``, in seconds."""
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=concurrency)
    started = time.monotonic()
    bucket.server.client().upload_file(str(path), bucket.name, "direct.bin", Config=config)
    return time.monotonic() - started


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
    (base / "seaweedfs").mkdir()
    s3 = S3Server.start(base / "seaweedfs")
    try:
        bucket = s3.bucket()
        with service(base / "s3", **bucket.settings()) as server:
            measure("raw PUT, service on S3 (SeaweedFS)", server.process.pid, size, args.repeat,
                    lambda: curl([*put, f"{server.url}/api/files/big.bin"]), after=lambda: _delete_uploaded(server))
        delete = lambda: s3.client().delete_object(Bucket=bucket.name, Key="direct.bin")  # noqa: E731
        for concurrency in (2, 10):  # the service's 2 parts in flight; boto3's default
            upload = lambda n=concurrency: _direct_upload(bucket, big, n)  # noqa: E731
            measure(f"boto3 upload_file to SeaweedFS, {concurrency} parts in flight (SeaweedFS's CPU, RSS)",
                    s3.process.pid, size, args.repeat, upload, after=delete)
        print(f"\nSeaweedFS peak RSS: {peak_rss_mib(s3.process.pid):.0f} MiB (the S3 server, for scale)")
    finally:
        s3.stop()
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
