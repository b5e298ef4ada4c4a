"""Large uploads stream in constant memory, even when storage is slower than the network.

The server's peak RSS (VmHWM) is read from /proc before and after; without backpressure a 300 MiB upload into
storage throttled to 100 MB/s grows the server by hundreds of MiB (Quart buffers the body as it arrives).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.process, pytest.mark.load]  # the server's own memory, 300 MiB uploads
SIZE = 300 * 1024 * 1024
ALLOWED_GROWTH_MIB = 64


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _body():
    block = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(SIZE // len(block)):
        yield block


@pytest.fixture
def slow_server(make_server):
    return make_server(plugins="tests.plugins.throttled_storage", storage_backend="throttled", throttle_mbps="100")


def test_raw_upload_into_slow_storage_keeps_memory_flat(slow_server):
    client = slow_server.client()
    client.put("/api/files/warm-up.bin", content=b"w" * 2_000_000)
    before = _peak_mib(slow_server.process.pid)
    response = client.put("/api/files/big.bin", content=_body())  # chunked, no Content-Length
    assert response.status_code == 201
    expected = hashlib.sha256(b"".join([bytes(range(256)) * 4096] * (SIZE >> 20))).hexdigest()
    assert response.json()["sha256"] == expected
    growth = _peak_mib(slow_server.process.pid) - before
    assert growth < ALLOWED_GROWTH_MIB, f"server grew by {growth:.0f} MiB while storing {SIZE >> 20} MiB"


def test_multipart_upload_into_slow_storage_keeps_memory_flat(slow_server):
    client = slow_server.client()
    client.put("/api/files/warm-up.bin", content=b"w" * 2_000_000)
    before = _peak_mib(slow_server.process.pid)
    boundary = "----bench-boundary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n").encode()
        yield from _body()
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/api/upload", content=body(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 201, response.text
    assert response.json()["files"][0]["size"] == SIZE
    growth = _peak_mib(slow_server.process.pid) - before
    assert growth < ALLOWED_GROWTH_MIB, f"server grew by {growth:.0f} MiB while storing {SIZE >> 20} MiB"
