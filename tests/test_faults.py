"""Faults against a real server: cut connections, slow and silent clients, a killed worker, failing storage.

Each test ends the same way: the client gets a clear status (or its connection is closed), no partial file is
listed or downloadable, nothing is left in staging, and a normal upload works afterwards.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import httpx

from .conftest import staging_entries, stored_files
from .faults import wait_for, worker_pids
from .servers import Server


def assert_still_serving(server: Server) -> None:
    """A normal upload and its download work, and only complete files are listed."""
    client = server.client()
    data = os.urandom(300_000)
    stored = client.put("/api/files/after-the-fault.bin", content=data)
    assert stored.status_code == 201, stored.text
    assert client.get(stored.json()["url"]).content == data
    for file in client.get("/api/files", params={"limit": 1000}).json()["files"]:
        assert client.get(file["url"]).headers["etag"] == f'"{file["sha256"]}"'


class UploadLoad:
    """Threads uploading raw bodies on fresh connections (so every worker gets some) until ``stop()``."""

    def __init__(self, server: Server, threads: int = 6) -> None:
        self.server = server
        self.sent: set[str] = set()  # sha256 of every body sent, answered or not
        self.stored: dict[str, str] = {}  # file id -> sha256, for every 201
        self.statuses: list[int] = []
        self.broken = 0  # requests whose connection failed (in flight on a killed worker)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(number,), daemon=True) for number in range(threads)]

    def __enter__(self) -> UploadLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, number: int) -> None:
        headers = {"Authorization": self.server.client().headers["Authorization"]}
        while not self._stop.is_set():
            data = os.urandom(100_000 + number * 150_000)
            digest = hashlib.sha256(data).hexdigest()
            with self._lock:
                self.sent.add(digest)
            try:
                answer = httpx.put(f"{self.server.url}/api/files/load-{number}.bin", content=data, headers=headers,
                                   timeout=30)
            except httpx.TransportError:
                with self._lock:
                    self.broken += 1
                continue
            with self._lock:
                self.statuses.append(answer.status_code)
                if answer.status_code == 201:
                    self.stored[answer.json()["id"]] = digest


def test_kill_9_of_one_worker_under_load(make_server) -> None:
    """The other worker keeps serving, a new worker replaces the dead one, and no partial file shows."""
    server = make_server(workers="2", cleanup_interval="1s")
    first, second = worker_pids(server)
    with UploadLoad(server) as load:
        assert wait_for(lambda: len(load.statuses) >= 20, timeout=30)
        os.kill(first, signal.SIGKILL)
        killed_at = len(load.statuses)
        assert wait_for(lambda: len(load.statuses) >= killed_at + 20, timeout=30)  # the other one serves
        assert wait_for(lambda: len(worker_pids(server)) == 2, timeout=30)
        replacement = next(pid for pid in worker_pids(server) if pid != second)
        os.kill(second, signal.SIGKILL)  # now only restarted workers are left to serve
        second_kill_at = len(load.statuses)
        assert wait_for(lambda: len(load.statuses) >= second_kill_at + 20, timeout=60)
    assert server.process.poll() is None
    assert replacement in worker_pids(server)
    assert set(load.statuses) == {201}, sorted(set(load.statuses))  # a failure is a broken connection, never a 5xx
    client = server.client()
    listed = {file["id"]: file["sha256"] for file in client.get("/api/files", params={"limit": 1000}).json()["files"]}
    assert load.stored.items() <= listed.items()  # every acknowledged upload is there, whole
    for file_id, digest in listed.items():  # and whatever else is there was sent whole (answer lost in the kill)
        assert digest in load.sent
        assert hashlib.sha256(client.get(f"/api/files/{file_id}/content").content).hexdigest() == digest
    assert len(stored_files(server, "files/")) == len(listed)
    assert wait_for(lambda: staging_entries(server) == [], timeout=20)  # the dead workers' leftovers are swept
    assert_still_serving(server)
