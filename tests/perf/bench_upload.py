"""Upload benchmark: prints throughput and server peak RSS for every upload path, next to nginx WebDAV PUT.

    uv run python -m tests.perf.bench_upload [--size-mib 1024] [--repeat 5]

Figures are medians of ``--repeat`` runs; peak RSS is the server's VmHWM (reset before each run).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
from pathlib import Path

from tests.perf.harness import AUTH, clear_uploads, curl, machine, make_file, measure, nginx, service, workdir
from tests.perf.load import put_load
from tests.servers import TOKENS


def bench_nginx(base: Path, big: Path, repeat: int):
    folder = base / "nginx"
    (folder / "root").mkdir(parents=True)
    with nginx(folder, folder / "root", "location / { dav_methods PUT; create_full_put_path on; }") as running:
        if running is None:
            print("| nginx WebDAV PUT | not installed (apt-get install nginx) | | |")
            return None
        port, worker = running
        return measure("nginx WebDAV PUT", worker, big.stat().st_size, repeat,
                       lambda: curl(["-T", str(big), f"http://127.0.0.1:{port}/big.bin"]),
                       after=lambda: (folder / "root" / "big.bin").unlink(missing_ok=True))


def bench_json(base: Path, size: int, repeat: int) -> None:
    payload = base / "payload.json"
    data = (base / "big.bin").open("rb").read(size)
    payload.write_text(json.dumps([{"filename": "big.bin", "content": base64.b64encode(data).decode()}]))
    del data
    with service(base / "json", max_json_upload_size="1GiB") as server:
        measure(f"{size >> 20} MiB base64 JSON PUT /api/upload", server.process.pid, size, repeat,
                lambda: curl(["-X", "PUT", "-H", AUTH, "-H", "Content-Type: application/json",
                              "--data-binary", f"@{payload}", f"{server.url}/api/upload"]),
                after=lambda: clear_uploads(server.upload_dir))
    payload.unlink()


def bench_small(base: Path, seconds: float) -> None:
    with service(base / "small") as server:
        port = int(server.url.rsplit(":", 1)[1])
        headers = {"Authorization": f"Bearer {TOKENS['alice']}", "Content-Type": "application/octet-stream"}
        result = asyncio.run(put_load("127.0.0.1", port, "/api/files/small.bin", headers, b"s" * 10240, 32, seconds))
        print(f"| 10 KiB raw PUT, concurrency 32, 1 worker, {seconds:g} s | {result['rps']:,.0f} req/s "
              f"| p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms | {result['requests']} requests, "
              f"{result['errors']} errors |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--json-mib", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--small-seconds", type=float, default=10)
    parser.add_argument("--only", default="nginx,raw,multipart,throttled,json,small")
    args = parser.parse_args()
    only = set(args.only.split(","))
    base = workdir("/tmp")
    size = args.size_mib * 1024 * 1024
    big = make_file(base / "big.bin", size)
    print(f"machine: {machine()}; file {args.size_mib} MiB; medians of {args.repeat}\n")
    print("| what | throughput | time | server CPU | server peak RSS |\n| --- | --- | --- | --- | --- |")
    figures = {}
    if "nginx" in only:
        figures["nginx"] = bench_nginx(base, big, args.repeat)
    if "raw" in only:
        with service(base / "raw") as server:
            figures["raw"] = measure("raw PUT /api/files/{name}", server.process.pid, size, args.repeat,
                                     lambda: curl(["-T", str(big), "-H", AUTH, f"{server.url}/api/files/big.bin"]),
                                     after=lambda: clear_uploads(server.upload_dir))
    if "multipart" in only:
        with service(base / "multipart") as server:
            figures["multipart"] = measure("multipart POST /api/upload", server.process.pid, size, args.repeat,
                                           lambda: curl(["-F", f"file=@{big}", "-H", AUTH, f"{server.url}/api/upload"]),
                                           after=lambda: clear_uploads(server.upload_dir))
    if "throttled" in only:
        with service(base / "throttled", plugins="tests.plugins.throttled_storage",
                     storage_backend="throttled") as server:
            measure("raw PUT, storage throttled to 200 MB/s", server.process.pid, size, args.repeat,
                    lambda: curl(["-T", str(big), "-H", AUTH, f"{server.url}/api/files/big.bin"]),
                    after=lambda: clear_uploads(server.upload_dir))
    if "json" in only:
        bench_json(base, args.json_mib * 1024 * 1024, args.repeat)
    if "small" in only:
        bench_small(base, args.small_seconds)
    nginx = figures.get("nginx")
    if nginx:
        for key in ("raw", "multipart"):
            if figures.get(key):
                print(f"\n{key}: {figures[key].mbps / nginx.mbps:.2f} x nginx", end="")
        print()
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
