"""ClamAV benchmark: the scanning overhead on a raw PUT (100 MiB by default), with and without the plugin.

    uv run python -m tests.perf.bench_clamav [--size-mib 100] [--repeat 3]

Starts a clamd of the tests (tests/clamd_server.py: a tiny signature database of their own, StreamMaxLength
above the file) and two services, one without CLAMD_URL (the plugin inert) and one scanning through clamd's
unix socket. Prints throughput, time, the service's CPU and peak RSS, and clamd's CPU. clamd's cost grows
with its database: the official one (millions of signatures) scans slower than this tiny one, so read the
"with" figure as the cost of the streaming and of clamd's parsers, a lower bound for a production clamd.
"""

from __future__ import annotations

import argparse
import shutil
import statistics

from tests.clamd_server import ClamdServer
from tests.perf.harness import AUTH, clear_uploads, cpu_seconds, curl, machine, make_file, measure, service, workdir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = workdir("/tmp")
    size = args.size_mib * 1024 * 1024
    big = make_file(base / "big.bin", size)
    put = ["-T", str(big), "-H", AUTH]
    clamd = ClamdServer.start(base / "clamd", stream_max_length=f"{args.size_mib + 16}M")
    try:
        print(f"machine: {machine()}; file {args.size_mib} MiB; medians of {args.repeat}\n")
        print("| what | throughput | time | server CPU | server peak RSS |\n| --- | --- | --- | --- | --- |")
        with service(base / "plain") as server:
            plain = measure("raw PUT, no scan (plugin inert)", server.process.pid, size, args.repeat,
                            lambda: curl([*put, f"{server.url}/api/files/big.bin"]),
                            after=lambda: clear_uploads(server.upload_dir))
        clamd_cpu = cpu_seconds(clamd.process.pid)
        with service(base / "scanned", clamd_url=clamd.unix_url) as server:
            scanned = measure("raw PUT, scanned by clamd", server.process.pid, size, args.repeat,
                              lambda: curl([*put, f"{server.url}/api/files/big.bin"]),
                              after=lambda: clear_uploads(server.upload_dir))
        clamd_cpu = (cpu_seconds(clamd.process.pid) - clamd_cpu) / args.repeat
        overhead = statistics.median(scanned.seconds) - statistics.median(plain.seconds)
        print(f"\nscanning overhead: {overhead:+.2f} s per {args.size_mib} MiB upload "
              f"({overhead / statistics.median(plain.seconds):+.0%}); clamd CPU {clamd_cpu:.2f} s per file")
    finally:
        clamd.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
