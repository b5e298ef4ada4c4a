"""tus benchmark: a 1 GiB upload in 8 MiB PATCHes next to a raw PUT of the same file, same server, same run.

    uv run python -m tests.perf.bench_tus [--size-mib 1024] [--chunk-mib 8] [--repeat 3]

Both go through one small client that sends file bytes with ``socket.sendfile`` (no copy in the client, so
the figures are the server's), and raw PUT also through curl as in ``bench_upload``. Figures are medians of
``--repeat`` runs; peak RSS is the server's VmHWM, reset before each run. Target: tus >= 0.8 x raw PUT,
peak RSS <= 80 MiB.
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import time
from pathlib import Path

from tests.perf.harness import AUTH, clear_uploads, curl, machine, make_file, measure, service, workdir
from tests.servers import TOKENS

HEADERS = {"Authorization": f"Bearer {TOKENS['alice']}"}


def send(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str],
         source=None, offset: int = 0, count: int = 0) -> http.client.HTTPResponse:
    """One request whose body is ``count`` bytes of ``source`` from ``offset``, sent by the kernel."""
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in {**HEADERS, **headers, "Content-Length": str(count)}.items():
        conn.putheader(name, value)
    conn.endheaders()
    if count:
        conn.sock.sendfile(source, offset, count)
    response = conn.getresponse()
    response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status}")
    return response


def raw_put(port: int, big: Path) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    with big.open("rb") as source:
        send(conn, "PUT", "/api/files/big.bin", {"Content-Type": "application/octet-stream"}, source, 0,
             big.stat().st_size)
    conn.close()
    return time.perf_counter() - started


def tus_upload(port: int, big: Path, chunk: int) -> float:
    size = big.stat().st_size
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    created = send(conn, "POST", "/api/tus/", {"Tus-Resumable": "1.0.0", "Upload-Length": str(size)})
    url = created.getheader("Location")
    with big.open("rb") as source:
        for offset in range(0, size, chunk):
            count = min(chunk, size - offset)
            done = send(conn, "PATCH", url, {"Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                                             "Content-Type": "application/offset+octet-stream"},
                        source, offset, count)
    conn.close()
    if not done.getheader("Upload-File-Id"):
        raise RuntimeError("the tus upload did not complete")
    return time.perf_counter() - started


def clear_tus(upload_dir: Path) -> None:
    clear_uploads(upload_dir)
    for folder in (upload_dir / ".resumable", upload_dir / ".locks"):
        if folder.exists():
            shutil.rmtree(folder)
            folder.mkdir()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = workdir("/tmp")
    size = args.size_mib * 1024 * 1024
    big = make_file(base / "big.bin", size)
    print(f"machine: {machine()}; file {args.size_mib} MiB; tus chunks {args.chunk_mib} MiB; "
          f"medians of {args.repeat}\n")
    print("| what | throughput | time | server CPU | server peak RSS |\n| --- | --- | --- | --- | --- |")
    try:
        with service(base / "server") as server:
            port = int(server.url.rsplit(":", 1)[1])
            pid = server.process.pid
            after = lambda: clear_tus(server.upload_dir)  # noqa: E731
            measure("raw PUT /api/files/{name} (curl)", pid, size, args.repeat,
                    lambda: curl(["-T", str(big), "-H", AUTH, f"{server.url}/api/files/big.bin"]), after)
            raw = measure("raw PUT /api/files/{name} (sendfile client)", pid, size, args.repeat,
                          lambda: raw_put(port, big), after)
            tus = measure(f"tus, {args.chunk_mib} MiB PATCHes (sendfile client)", pid, size, args.repeat,
                          lambda: tus_upload(port, big, args.chunk_mib * 1024 * 1024), after)
        print(f"\ntus: {tus.mbps / raw.mbps:.2f} x raw PUT (target >= 0.8), "
              f"peak RSS {max(tus.rss):.0f} MiB (target <= 80)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
