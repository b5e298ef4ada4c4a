"""Faults against a real server: cut connections, slow and silent clients, a killed worker, failing storage.

Each test ends the same way: the client gets a clear status (or its connection is closed), no partial file is
listed or downloadable, nothing is left in staging, and a normal upload works afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import threading
import time

import httpx
import pytest

from .conftest import staging_entries, stored_files
from .faults import connect, read_answer, request_head, wait_for, worker_pids
from .servers import Server

MiB = 1024 * 1024


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


def _trickle(socks: list, seconds: float, gap: float) -> dict:
    """Send one byte on every socket each ``gap`` seconds; return when each was cut off (or None)."""
    cut: dict = {sock: None for sock in socks}
    started = time.monotonic()
    while time.monotonic() - started < seconds and any(when is None for when in cut.values()):
        for sock in socks:
            if cut[sock] is None:
                try:
                    sock.sendall(b"x")
                except OSError:
                    cut[sock] = time.monotonic() - started
        time.sleep(gap)
    return cut


def test_slowloris_bodies_are_cut_off_while_other_clients_are_served(make_server) -> None:
    """Clients trickling a byte every 0.2 s never go idle; the minimum rate cuts them off with 408."""
    server = make_server(upload_idle_timeout="1s", upload_min_rate="1KiB")
    slow = [connect(server) for _ in range(20)]
    for sock in slow:
        sock.sendall(request_head(server, "/api/files/trickle.bin", 100_000))
    served: list[int] = []

    def normal_clients() -> None:
        client = server.client()
        for number in range(20):
            served.append(client.put(f"/api/files/normal-{number}.bin", content=os.urandom(200_000)).status_code)

    thread = threading.Thread(target=normal_clients)
    thread.start()
    cut = _trickle(slow, seconds=15, gap=0.2)
    thread.join(30)
    assert served == [201] * 20
    assert all(when is not None and when < 8 for when in cut.values()), cut
    for sock in slow:
        sock.settimeout(5)
        answer = read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert b"slower than 1024 bytes per second" in answer
    assert wait_for(lambda: staging_entries(server) == [])
    assert len(server.client().get("/api/files").json()["files"]) == 20
    assert_still_serving(server)


def test_headers_sent_slowly_are_cut_off_while_other_clients_are_served(make_server) -> None:
    """Hypercorn gives a connection its keep-alive timeout (5 s) to send a whole request head."""
    server = make_server()
    slow = [connect(server) for _ in range(20)]
    heads = [request_head(server, "/api/files/slow-head.bin", 10) for _ in slow]
    started = time.monotonic()
    cut_after: list[float] = []
    statuses = [server.client().put("/api/files/meanwhile.bin", content=b"m" * 1000).status_code]
    for index in range(max(len(head) for head in heads)):
        for sock, head in zip(slow, heads):
            if sock.fileno() != -1 and index < len(head):
                try:
                    sock.sendall(head[index:index + 1])
                except OSError:
                    cut_after.append(time.monotonic() - started)
                    sock.close()
        if index % 10 == 0:
            statuses.append(server.client().put("/api/files/meanwhile.bin", content=b"m" * 1000).status_code)
        if len(cut_after) == len(slow) or time.monotonic() - started > 20:
            break
        time.sleep(0.1)
    assert len(cut_after) == len(slow) and max(cut_after) < 10, cut_after
    assert set(statuses) == {201} and len(statuses) > 3
    assert_still_serving(server)


def _nothing_visible(server: Server, expected_files: int = 0) -> None:
    assert wait_for(lambda: staging_entries(server) == [])
    assert len(server.client().get("/api/files").json()["files"]) == expected_files
    assert len(stored_files(server, "files/")) == expected_files


@pytest.mark.parametrize("mode", ["error", "timeout"])
@pytest.mark.parametrize("kind", ["raw", "multipart", "json"])
def test_storage_failing_mid_write_is_a_clear_error_and_keeps_nothing(make_server, mode: str, kind: str) -> None:
    server = make_server(plugins="tests.plugins.faulty_storage", storage_backend="faulty", fault_mode=mode,
                         fault_after_bytes=str(MiB))
    data = os.urandom(3 * MiB)
    client = server.client()
    if kind == "raw":
        answer = client.put("/api/files/doomed.bin", content=data)
    elif kind == "multipart":
        answer = client.post("/api/upload", files=[("file", ("small.txt", b"fits", "text/plain")),
                                                   ("file", ("doomed.bin", data, "application/octet-stream"))])
    else:
        answer = client.put("/api/upload", json=[{"filename": "doomed.bin", "content": base64.b64encode(data).decode()}])
    expected = {"error": (500, "the storage failed"), "timeout": (504, "the storage did not answer in time")}[mode]
    assert answer.status_code == expected[0], answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"].startswith(expected[1])
    _nothing_visible(server)
    assert_still_serving(server)  # 300 kB: under the fault's threshold
