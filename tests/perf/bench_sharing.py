"""Sharing benchmark: a 1 GiB file downloaded through a share link, beside the owner's own download and nginx
serving the same file from disk; and the zip of a share of 1,000 small files.

    uv run python -m tests.perf.bench_sharing [--size-mib 1024] [--repeat 5] [--zip-files 1000]

Figures are medians of ``--repeat`` runs; peak RSS is the server's VmHWM (reset before each run).
"""

from __future__ import annotations

import argparse
import io
import shutil
import zipfile
from pathlib import Path

import httpx

from tests.perf.harness import AUTH, curl, machine, make_file, measure, nginx, service, workdir
from tests.servers import TOKENS


def bench_nginx(base: Path, big: Path, repeat: int):
    with nginx(base / "nginx", big.parent, "sendfile on;") as running:
        if running is None:
            print("| nginx static GET | not installed (apt-get install nginx) | | | |")
            return None
        port, worker = running
        return measure("nginx static GET", worker, big.stat().st_size, repeat,
                       lambda: curl([f"http://127.0.0.1:{port}/{big.name}"]))


def bench_downloads(base: Path, big: Path, repeat: int) -> dict:
    figures = {}
    size = big.stat().st_size
    with service(base / "downloads") as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKENS['alice']}"},
                              timeout=600)
        with big.open("rb") as body:
            file = client.put("/api/files/big.bin", content=body).raise_for_status().json()
        share = client.post("/api/shares", json={"files": [file["id"]]}).raise_for_status().json()
        figures["owner"] = measure("owner GET /api/files/{id}/content", server.process.pid, size, repeat,
                                   lambda: curl(["-H", AUTH, f"{server.url}{file['url']}"]))
        figures["share"] = measure("share GET /s/{token}/files/{id}", server.process.pid, size, repeat,
                                   lambda: curl([f"{server.url}{share['url']}/files/{file['id']}"]))
        figures["share_zip"] = measure("share GET /s/{token}/zip (the same file, zipped)", server.process.pid, size,
                                       repeat, lambda: curl([f"{server.url}{share['url']}/zip"]))
    return figures


def bench_zip(base: Path, count: int, repeat: int) -> None:
    with service(base / "zip") as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKENS['alice']}"},
                              timeout=600)
        ids = [client.put(f"/api/files/small-{n:04}.bin", content=bytes([n % 256]) * 10240).json()["id"]
               for n in range(count)]
        share = client.post("/api/shares", json={"files": ids}).raise_for_status().json()
        archive = httpx.get(f"{server.url}{share['url']}/zip", timeout=600).content
        with zipfile.ZipFile(io.BytesIO(archive)) as check:
            assert len(check.namelist()) == count and check.testzip() is None
        measure(f"share zip of {count} files of 10 KiB", server.process.pid, len(archive), repeat,
                lambda: curl([f"{server.url}{share['url']}/zip"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--zip-files", type=int, default=1000)
    args = parser.parse_args()
    base = workdir("/tmp")
    big = make_file(base / "big.bin", args.size_mib * 1024 * 1024)
    print(f"machine: {machine()}; file {args.size_mib} MiB; medians of {args.repeat}\n")
    print("| what | throughput | time | server CPU | server peak RSS |\n| --- | --- | --- | --- | --- |")
    nginx = bench_nginx(base, big, args.repeat)
    figures = bench_downloads(base, big, args.repeat)
    bench_zip(base, args.zip_files, args.repeat)
    if nginx:
        for key, figure in figures.items():
            print(f"\n{key}: {figure.mbps / nginx.mbps:.2f} x nginx", end="")
        print()
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
