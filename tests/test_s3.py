"""The S3 backend end to end: services on moto's S3 server over real HTTP, checked from the outside.

The shared API suites already run on S3 (see ``conftest.STORAGE_SUITES``); these tests cover what only a
remote object store has: multipart streaming in bounded memory, aborted multipart uploads, several
instances on one bucket, crash recovery by the sweep, start-up checks and presigned downloads.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .servers import TOKENS

MiB = 1024 * 1024


@pytest.fixture
def s3_service(make_server, s3_server):
    """``s3_service(bucket=None, **settings)``: a service on a fresh bucket, or on a given one (shared)."""

    def make(bucket=None, **settings):
        bucket = bucket or s3_server.bucket()
        server = make_server(**bucket.settings(), **settings)
        server.backend, server.bucket = "s3", bucket
        return server

    return make


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _chunks(total: int, seed: bytes = b"s3"):
    block = hashlib.sha256(seed).digest() * (MiB // 32)
    for _ in range(total // MiB):
        yield block


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def test_200_mib_upload_streams_through_in_bounded_memory(s3_service):
    server = s3_service()
    client = server.client()
    client.put("/api/files/warm-up.txt", content=b"warm up")  # imports and pools in place before the baseline
    baseline = _peak_rss_mib(server.process.pid)
    expected = hashlib.sha256()
    for chunk in _chunks(200 * MiB):
        expected.update(chunk)
    response = client.put("/api/files/big.bin", content=_chunks(200 * MiB), timeout=300)
    assert response.status_code == 201, response.text
    file = response.json()
    assert file["size"] == 200 * MiB and file["sha256"] == expected.hexdigest()
    peak = _peak_rss_mib(server.process.pid)
    assert peak - baseline < 80, f"peak RSS grew by {peak - baseline:.0f} MiB while streaming 200 MiB"
    blobs = [key for key in server.bucket.keys("blobs/")]
    etags = {server.bucket.server.client().head_object(Bucket=server.bucket.name, Key=key)["ETag"] for key in blobs}
    assert any(etag.endswith('-25"') for etag in etags), etags  # one multipart upload of 25 parts of 8 MiB
    downloaded = hashlib.sha256()
    with client.stream("GET", file["url"]) as body:
        for chunk in body.iter_bytes():
            downloaded.update(chunk)
    assert downloaded.hexdigest() == file["sha256"]
    assert server.bucket.leftovers() == []
