"""The full mixed load: 200 clients for 60 s against one service (WORKERS=2, local storage), then every
stored file downloaded and checked by sha256 against what its client sent.

    uv run python -m tests.perf.service_load [--clients 200] [--seconds 60] [--workers 2]

The normal test suite runs the same with 30 clients for 10 s (tests/test_load.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from tests.mixed_load import check_store, run_mixed_load, summary
from tests.perf.harness import machine
from tests.servers import start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", help="keep the server's folder (log, uploads) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep or scratch)
        root.mkdir(parents=True, exist_ok=True)
        server = start_server(root, fresh=True, workers=str(args.workers), log_level="INFO")
        try:
            before = os.getloadavg()
            report = run_mixed_load(server.url, args.clients, args.seconds)
            after = os.getloadavg()
            check_store(server.url, report, server.upload_dir)
        finally:
            server.stop()
    print(f"{args.clients} clients, {args.seconds:.0f} s, WORKERS={args.workers}, local storage; {machine()}")
    print(f"load average before {before[0]:.1f}, after {after[0]:.1f} (machine shared with other jobs)")
    print(summary(report))
    if report.lost or report.corrupted or report.duplicated or report.unexpected or report.wrong_bytes:
        raise SystemExit("FAILED: files lost, corrupted, duplicated or unexpected")


if __name__ == "__main__":
    main()
