"""A small upload costs one trip to the local storage's threads, whichever path it takes (digest headers, which
must be checked before commit, are tested in ``test_robustness``).

Each trip is a thread wake-up and GIL hand-offs, which beside the durable create's own system calls are the
largest cost of a 10 KiB upload (``tests/perf/bench_small_ceiling``); a change that quietly adds one (a flush before
commit did) costs a sixth of the small-upload throughput.
"""

from __future__ import annotations

import base64
import hashlib
import threading

import pytest

SMALL = b"s" * 10240


@pytest.fixture
def running(upload_service_factory):
    """A service without the cleanup plugin, whose sweep at start-up would use the same threads meanwhile."""
    return upload_service_factory(disabled_plugins="cleanup")


@pytest.fixture
def trips(running, monkeypatch):
    """Counts the jobs handed to the service's local storage's thread pool."""
    counted = {"n": 0}
    lock = threading.Lock()
    pool = running.service.storage.threads.pool
    submit = pool.submit

    def counting(*args, **kwargs):
        with lock:
            counted["n"] += 1
        return submit(*args, **kwargs)

    monkeypatch.setattr(pool, "submit", counting)
    return counted


@pytest.fixture
def client(running):
    return running.client()


def _send(client, how: str):
    if how == "raw":
        return client.put("/api/files/small.bin", content=SMALL)
    if how == "multipart":
        return client.post("/api/upload", files={"file": ("small.bin", SMALL)})
    return client.put("/api/upload", json=[{"filename": "small.bin", "content": base64.b64encode(SMALL).decode()}])


@pytest.mark.parametrize("how", ["raw", "multipart", "json"])
def test_a_small_upload_makes_one_storage_trip(client, trips, how):
    trips["n"] = 0
    response = _send(client, how)
    assert response.status_code == 201, response.text
    assert trips["n"] == 1
    described = response.json()
    file = described["files"][0] if "files" in described else described
    assert file["sha256"] == hashlib.sha256(SMALL).hexdigest()
    assert client.get(file["url"]).content == SMALL
