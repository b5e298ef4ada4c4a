"""Listing and sweeping at 1,000 and 1,000,000 files of one owner, and what a 100-byte upload costs on disk.

For each size the files are seeded by writing the local storage's on-disk layout directly (what a commit leaves:
the file ``objects/files/<owner>/<id>`` with its record in an xattr, ids made as the service makes them, without
the flushes), in a process pool; the index is then built by ``upload-service reindex``, and a real server
(Hypercorn, one worker) answers ``GET /api/files?limit=20``: the first page, and a page at a cursor in the middle
of the owner's files. The sweep (the cleanup hook of every plugin, as the periodic task runs it) runs in this
process on the same folder, beside the server, over the temporary uploads seeded with the files (a tenth as many,
100 of them expired). Figures are medians. Last, 1,000 uploads of 100 bytes over HTTP into a fresh folder give the
bytes and inodes each costs (objects and index apart).

    uv run python -m tests.perf.bench_listing [--sizes 1000,1000000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.perf.harness import machine, service, workdir
from tests.servers import TOKENS
from upload_service.builtin.local_storage.layout import ATTRIBUTE
from upload_service.files import new_file_id
from upload_service.identity import owner_key

AUTH = {"Authorization": f"Bearer {TOKENS['alice']}"}
OWNER_ID = "token:alice"
OWNER = owner_key(OWNER_ID)
BODY = b"x" * 100
SECRET = "bench-secret-key-0123456789abcdef"


def _seed_chunk(objects: str, area: str, start: int, count: int, expired: int) -> list[str]:
    """Write ``count`` objects of the owner as a commit leaves them; the first ``expired`` have expired."""
    folder = Path(objects) / area / OWNER
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    base = time.time() - 86400 * 30
    ids = []
    for number in range(start, start + count):
        file_id = new_file_id(base + number / 1000)
        temporary = area == "temp"
        expires = (now + timedelta(hours=-1 if number - start < expired else 24)).isoformat() if temporary else None
        created = datetime.fromtimestamp(base + number / 1000, UTC).isoformat()
        meta = {"size": len(BODY), "sha256": "0" * 64, "created_at": created,
                "metadata": {"owner": OWNER_ID, "filename": f"f{number}.txt", "content_type": "text/plain",
                             "expires_at": expires, "metadata": {}}}
        fd = os.open(folder / file_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            os.write(fd, BODY)
            os.setxattr(fd, ATTRIBUTE, json.dumps(meta).encode())  # the record, as ``Layout.seal`` gives it
        finally:
            os.close(fd)
        ids.append(file_id)
    return ids


def seed(upload_dir: Path, size: int, processes: int = 2) -> tuple[list[str], float]:
    """``size`` persistent files and ``size // 10`` temporary ones (100 expired) of one owner; sorted ids."""
    started = time.perf_counter()
    objects = str(upload_dir / "objects")
    step = 10_000
    ids: list[str] = []
    with ProcessPoolExecutor(processes) as pool:
        jobs = [pool.submit(_seed_chunk, objects, "files", start, min(step, size - start), 0)
                for start in range(0, size, step)]
        temporary = max(size // 10, 100)
        jobs += [pool.submit(_seed_chunk, objects, "temp", 10**9 + start, min(step, temporary - start),
                             100 if start == 0 else 0) for start in range(0, temporary, step)]
        for job in jobs[: len(range(0, size, step))]:
            ids += job.result()
        for job in jobs:
            job.result()
    return sorted(ids), time.perf_counter() - started


def reindex(upload_dir: Path) -> tuple[int, float]:
    """``upload-service reindex`` before the server starts (a start would build the index in the background)."""
    env = {**os.environ, "UPLOAD_DIR": str(upload_dir), "SECRET_KEY": SECRET, "LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "upload_service.cli", "reindex"], env=env,
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)["objects"], time.perf_counter() - started


def median_ms(client: httpx.Client, params: dict[str, str], requests: int, expect: int) -> float:
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get("/api/files", params=params)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200 and len(response.json()["files"]) == expect, response.text[:200]
    return statistics.median(times) * 1000


async def sweep_ms(upload_dir: Path, rounds: int) -> tuple[float, float, int]:
    """The first sweep (removing the expired uploads) and the median of the next ``rounds`` (nothing to do)."""
    from upload_service.app import create_app
    from upload_service.settings import Settings

    app = create_app(Settings(upload_dir=upload_dir, secret_key=SECRET))
    service = next(ext for ext in app.extensions.values() if ext.__class__.__name__ == "UploadService")
    await service.preflight()
    try:
        started = time.perf_counter()
        removed = await service.sweep()
        first = time.perf_counter() - started
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            await service.sweep()
            times.append(time.perf_counter() - started)
        return first * 1000, statistics.median(times) * 1000, removed
    finally:
        await service.stop()


def one_size(base: Path, size: int, requests: int) -> dict[str, float]:
    root = base / f"n{size}"
    upload_dir = root / "uploads"
    ids, seeded = seed(upload_dir, size)
    print(f"  seeded {size:,} files (+{max(size // 10, 100):,} temporary) in {seeded:.1f} s", flush=True)
    objects, rebuilt = reindex(upload_dir)
    print(f"  reindex: {objects:,} objects in {rebuilt:.1f} s", flush=True)
    # the server's own sweep is off (it would run at its start): the one measured here removes the expired uploads
    with service(root, upload_dir=str(upload_dir), secret_key=SECRET, disabled_plugins="cleanup") as server:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
            first = median_ms(client, {"limit": "20"}, requests, 20)
            deep = median_ms(client, {"limit": "20", "cursor": ids[len(ids) // 2]}, requests, 20)
        swept_first, swept, removed = asyncio.run(sweep_ms(upload_dir, 5))
    figures = {"files": size, "seed_s": seeded, "reindex_s": rebuilt, "first_page_ms": first, "deep_page_ms": deep,
               "sweep_first_ms": swept_first, "sweep_ms": swept, "swept": removed}
    print(f"  GET /api/files?limit=20: first page {first:.2f} ms, deep page {deep:.2f} ms (medians of {requests}); "
          f"sweep {swept_first:.0f} ms removing {removed}, then {swept:.1f} ms", flush=True)
    started = time.perf_counter()
    shutil.rmtree(root)
    print(f"  removed the folder in {time.perf_counter() - started:.0f} s", flush=True)
    return figures


def usage(path: Path) -> tuple[int, int]:
    """Bytes allocated and inodes under ``path``."""
    blocks = inodes = 0
    for folder, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            blocks += os.lstat(os.path.join(folder, name)).st_blocks
            inodes += 1
    return blocks * 512, inodes


def per_upload(base: Path, count: int = 1000) -> dict[str, float]:
    root = base / "per-upload"
    upload_dir = root / "uploads"
    index = upload_dir / ".index"
    with (service(root, upload_dir=str(upload_dir), secret_key=SECRET) as server,
          httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client):
        client.put("/api/files/warm.txt", content=BODY)
        objects_before, index_before = usage(upload_dir / "objects"), usage(index)
        for number in range(count):
            assert client.put(f"/api/files/f{number}.txt", content=BODY).status_code == 201
        with sqlite3.connect(index / "objects.sqlite3") as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        objects_after, index_after = usage(upload_dir / "objects"), usage(index)
    shutil.rmtree(root)
    figures = {"object_bytes": (objects_after[0] - objects_before[0]) / count,
               "object_inodes": (objects_after[1] - objects_before[1]) / count,
               "index_bytes": (index_after[0] - index_before[0]) / count}
    print(f"  per 100-byte upload: {figures['object_bytes']:.0f} bytes and {figures['object_inodes']:.1f} inodes of "
          f"objects, {figures['index_bytes']:.0f} bytes of index", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--base", help="folder for the work (default: a temporary folder)")
    args = parser.parse_args()
    print(f"bench_listing on {machine()}", flush=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base = workdir(args.base)
    try:
        results = []
        for size in (int(value) for value in args.sizes.split(",")):
            print(f"{size:,} files of one owner", flush=True)
            results.append(one_size(base, size, args.requests))
        results.append(per_upload(base))
        print(json.dumps(results))
        if len(results) > 2:
            small, large = results[0], results[-2]
            print(f"first page at {large['files']:,} / at {small['files']:,}: "
                  f"{large['first_page_ms'] / small['first_page_ms']:.2f}x; deep page: "
                  f"{large['deep_page_ms'] / small['deep_page_ms']:.2f}x", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
