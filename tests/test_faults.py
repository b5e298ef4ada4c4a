"""Faults against a real server: cut connections, slow and silent clients, a killed worker, failing storage.

Each test ends the same way: the client gets a clear status (or its connection is closed), no partial file is
listed or downloadable, nothing is left in staging, and a normal upload works afterwards.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from upload_service.settings import Settings

from .cluster import NGINX_CONF, deployed_nginx_conf
from .conftest import staging_entries, stored_files
from .faults import connect, read_answer, read_answer_head, received, request_head, rss_mib, wait_for, worker_pids
from .servers import ROOT, Server, free_port, tls
from .tcp_proxy import BreakingProxy
from .tus import create, offset_of

MiB = 1024 * 1024
pytestmark = pytest.mark.process  # kill -9, /proc, memory, slow clients against the CLI's server


def assert_still_serving(server: Server) -> None:
    """A normal upload and its download work, and every listed file downloads whole (its sha256)."""
    client = server.client()
    data = os.urandom(300_000)
    stored = client.put("/api/files/after-the-fault.bin", content=data)
    assert stored.status_code == 201, stored.text
    assert client.get(stored.json()["url"]).content == data
    for file in client.get("/api/files", params={"limit": 1000}).json()["files"]:
        assert hashlib.sha256(client.get(file["url"]).content).hexdigest() == file["sha256"]


class UploadLoad:
    """Threads uploading raw bodies on fresh connections (so every worker gets some) until the block ends."""

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
                                   timeout=30, verify=tls())
            except httpx.TransportError:
                with self._lock:
                    self.broken += 1
                continue
            with self._lock:
                self.statuses.append(answer.status_code)
                if answer.status_code == 201:
                    self.stored[answer.json()["id"]] = digest


@pytest.mark.load
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
    """A connection has KEEP_ALIVE_TIMEOUT (Hypercorn's keep-alive clock) to send a whole request head."""
    server = make_server(keep_alive_timeout="4s")
    slow = [connect(server) for _ in range(20)]
    heads = [request_head(server, "/api/files/slow-head.bin", 10) for _ in slow]
    started = time.monotonic()
    cut_after: list[float] = []
    statuses = [server.client().put("/api/files/meanwhile.bin", content=b"m" * 1000).status_code]
    for index in range(max(len(head) for head in heads)):
        for sock, head in zip(slow, heads, strict=True):
            if sock.fileno() != -1 and index < len(head):
                try:
                    sock.sendall(head[index:index + 1])
                except OSError:
                    cut_after.append(time.monotonic() - started)
                    sock.close()
        if index % 10 == 0:
            statuses.append(server.client().put("/api/files/meanwhile.bin", content=b"m" * 1000).status_code)
        if len(cut_after) == len(slow) or time.monotonic() - started > 30:
            break
        time.sleep(0.1)
    assert len(cut_after) == len(slow) and max(cut_after) < 15, cut_after  # a head is ~250 bytes: 25 s
    assert set(statuses) == {201} and len(statuses) > 3, statuses
    assert_still_serving(server)


def _nothing_visible(server: Server, expected_files: int = 0) -> None:
    assert wait_for(lambda: staging_entries(server) == [])
    assert len(server.client().get("/api/files").json()["files"]) == expected_files
    assert len(stored_files(server, "files/")) == expected_files


@pytest.mark.parametrize("mode", ["error", "timeout", "hang"])
@pytest.mark.parametrize("kind", ["raw", "multipart", "json"])
def test_storage_failing_mid_write_is_a_clear_error_and_keeps_nothing(make_server, mode: str, kind: str) -> None:
    """An I/O error is 500, a storage client's timeout and a storage that never answers (STORAGE_TIMEOUT) 504."""
    server = make_server(plugins="tests.plugins.faulty_storage", storage_backend="faulty", fault_mode=mode,
                         fault_after_bytes=str(MiB), storage_timeout="2s")
    data = os.urandom(3 * MiB)
    client = server.client()
    if kind == "raw":
        answer = client.put("/api/files/doomed.bin", content=data)
    elif kind == "multipart":
        answer = client.post("/api/upload", files=[("file", ("small.txt", b"fits", "text/plain")),
                                                   ("file", ("doomed.bin", data, "application/octet-stream"))])
    else:
        answer = client.put("/api/upload",
                            json=[{"filename": "doomed.bin", "content": base64.b64encode(data).decode()}])
    expected = (500, "the storage failed") if mode == "error" else (504, "the storage did not answer in time")
    assert answer.status_code == expected[0], answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"].startswith(expected[1])
    _nothing_visible(server)
    assert_still_serving(server)  # 300 kB: under the fault's threshold


def _cut(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a dropped connection looks to the server."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _partial_request(server: Server, kind: str, sent: int) -> tuple[socket.socket, str | None]:
    """A request of ``kind`` whose head and ``sent`` body bytes went out; (socket, tus upload URL or None)."""
    declared, tus_url = 20 * MiB, None
    if kind == "raw":
        head, body = request_head(server, "/api/files/cut.bin", declared), os.urandom(sent)
    elif kind == "raw_chunked":
        head, body = request_head(server, "/api/files/cut.bin", None), b"%x\r\n" % sent + os.urandom(sent) + b"\r\n"
    elif kind == "multipart":
        head = request_head(server, "/api/upload", declared, "POST",
                            {"Content-Type": "multipart/form-data; boundary=cut"})
        body = (b'--cut\r\nContent-Disposition: form-data; name="file"; filename="cut.bin"\r\n\r\n'
                + os.urandom(sent))
    elif kind == "json":
        head = request_head(server, "/api/upload", declared, headers={"Content-Type": "application/json"})
        body = b'[{"filename": "cut.bin", "content": "' + base64.b64encode(os.urandom(sent))[:sent]
    else:
        tus_url = create(server.client(), declared)
        head = request_head(server, tus_url, declared, "PATCH", {
            "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
        body = os.urandom(sent)
    sock = connect(server)
    sock.sendall(head + body)
    return sock, tus_url


KINDS = ["raw", "raw_chunked", "multipart", "json", "tus"]


@pytest.mark.parametrize("kind", KINDS)
def test_connection_cut_mid_upload_leaves_no_partial_file(make_server, kind: str) -> None:
    server = make_server()
    sent = 3 * MiB
    sock, tus_url = _partial_request(server, kind, sent)
    assert wait_for(lambda: received(sock))  # the server has read all that was sent: the cut is mid-upload
    _cut(sock)
    _nothing_visible(server)
    if tus_url is not None:  # the bytes that arrived stay with the upload, to resume; they are not a file
        assert wait_for(lambda: 0 < offset_of(server.client(), tus_url) <= sent)
        assert "Upload-File-Id" not in server.client().head(tus_url, headers={"Tus-Resumable": "1.0.0"}).headers
    assert_still_serving(server)


@pytest.mark.parametrize("kind", KINDS)
def test_client_that_stops_sending_gets_408_and_leaves_no_partial_file(make_server, kind: str) -> None:
    server = make_server(upload_idle_timeout="1s")
    sent = 2 * MiB
    sock, tus_url = _partial_request(server, kind, sent)
    sock.settimeout(15)
    started = time.monotonic()
    answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"no data received for 1 seconds" in answer
    assert time.monotonic() - started < 10
    _nothing_visible(server)
    if tus_url is not None:
        assert offset_of(server.client(), tus_url) == sent  # tus keeps what arrived, for the client to resume
    assert_still_serving(server)


def test_downloads_cut_midway_leave_the_file_whole_and_no_handle_open(make_server) -> None:
    server = make_server()
    data = os.urandom(20 * MiB)
    client = server.client()
    file = client.put("/api/files/big.bin", content=data).json()
    assert client.get(file["url"], headers={"Range": "bytes=0-9"}).content == data[:10]  # opened once: warm
    baseline = len(os.listdir(f"/proc/{server.process.pid}/fd"))
    for number in range(30):
        sock = connect(server)
        ranged = {"Range": f"bytes={number * 1000}-"} if number % 2 else {}
        sock.sendall(request_head(server, file["url"], 0, "GET", ranged))
        received = 0
        while received < 256 * 1024:
            received += len(sock.recv(65536))
        _cut(sock)
    assert wait_for(lambda: len(os.listdir(f"/proc/{server.process.pid}/fd")) <= baseline + 2)
    assert hashlib.sha256(client.get(file["url"]).content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert client.get(file["url"], headers={"Range": "bytes=100-199"}).content == data[100:200]
    assert client.delete(f"/api/files/{file['id']}").status_code == 204
    assert_still_serving(server)


def _settled_rss(server: Server) -> float:
    """The server's resident memory once it has stopped changing for half a second (the last cut requests are
    finished), or after 10 s."""
    readings = [rss_mib(server.process.pid)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (len(readings) < 6 or max(readings[-6:]) - min(readings[-6:]) > 0.25):
        time.sleep(0.1)
        readings.append(rss_mib(server.process.pid))
    return readings[-1]


def _abort_uploads(server: Server, count: int, kinds: list[str], sent: int = 256 * 1024) -> None:
    """``count`` uploads of the given kinds, 20 at a time, each cut after ``sent`` body bytes."""

    def one(number: int) -> None:
        sock, _ = _partial_request(server, kinds[number % len(kinds)], sent)
        _cut(sock)

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        list(pool.map(one, range(count)))


@pytest.mark.load
def test_1000_aborted_uploads_leave_memory_at_its_baseline(make_server) -> None:
    """A leak check, not a timing: the server's resident memory after 1,000 aborted uploads of every kind
    stays within a small margin of what it was after a warm-up of the same."""
    server = make_server()
    kinds = ["raw", "raw_chunked", "multipart", "json", "tus"]
    _abort_uploads(server, 200, kinds)  # warm-up: imports, allocator pools, caches reach their size
    assert wait_for(lambda: staging_entries(server) == [], timeout=30)
    baseline = _settled_rss(server)
    _abort_uploads(server, 1000, kinds)
    assert wait_for(lambda: staging_entries(server) == [], timeout=30)
    after = _settled_rss(server)
    print(f"server RSS: {baseline:.1f} MiB after the warm-up, {after:.1f} MiB after 1,000 aborted uploads")
    assert after - baseline < 16, f"RSS grew from {baseline:.1f} to {after:.1f} MiB"
    _nothing_visible(server)
    assert_still_serving(server)


@pytest.fixture
def s3_behind_proxy(s3_server, make_server):
    """A service on S3 whose connections to S3 go through a proxy that breaks PUTs (call with its options)."""
    proxies: list[BreakingProxy] = []

    def start(storage_timeout: str = "60s", max_attempts: int = 5, **options) -> tuple[Server, BreakingProxy]:
        bucket = s3_server.bucket()
        proxy = BreakingProxy(int(s3_server.url.rsplit(":", 1)[1]), method=b"PUT", **options).__enter__()
        proxies.append(proxy)
        server = make_server(**{**bucket.settings(), "s3_endpoint_url": proxy.url, "storage_timeout": storage_timeout,
                                "s3_max_attempts": str(max_attempts)})
        server.backend, server.bucket = "s3", bucket
        return server, proxy

    yield start
    for proxy in proxies:
        proxy.__exit__(None, None, None)


def test_s3_connection_cut_once_mid_write_is_retried_and_the_file_is_whole(s3_behind_proxy) -> None:
    server, proxy = s3_behind_proxy(after=3 * MiB, mode="cut")
    data = os.urandom(12 * MiB)  # a multipart upload: the cut falls in its first part
    answer = server.client().put("/api/files/retried.bin", content=data)
    assert proxy.breaks == 1
    assert answer.status_code == 201, answer.text
    assert answer.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert server.client().get(answer.json()["url"]).content == data
    assert wait_for(lambda: staging_entries(server) == [] and server.bucket.multipart_uploads() == [])
    assert_still_serving(server)


@pytest.mark.parametrize("mode", ["cut", "stall"])
def test_s3_failing_mid_write_is_a_clear_error_and_keeps_nothing(s3_behind_proxy, mode: str) -> None:
    """Every PUT connection breaks (cut: past the client's retries; stall: S3 goes silent past STORAGE_TIMEOUT)."""
    server, proxy = s3_behind_proxy(after=3 * MiB, mode=mode, times=1000, max_attempts=2,  # no long backoff
                                    storage_timeout="60s" if mode == "cut" else "3s")
    answer = server.client().put("/api/files/doomed.bin", content=os.urandom(12 * MiB))
    expected = (500, "the storage failed") if mode == "cut" else (504, "the storage did not answer in time")
    assert answer.status_code == expected[0], answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"].startswith(expected[1])
    proxy.times = proxy.breaks  # S3 is reachable again
    assert wait_for(lambda: staging_entries(server) == [] and server.bucket.multipart_uploads() == [], timeout=20)
    _nothing_visible(server)
    assert_still_serving(server)


def test_nginx_drops_idle_upstream_connections_before_the_service_closes_them() -> None:
    """The cause of a rare 502 from a live instance behind nginx: the service closes a keep-alive connection idle
    for KEEP_ALIVE_TIMEOUT (it was Hypercorn's 5 s); nginx (60 s by default) could send a PATCH on it just then,
    and does not retry a non-idempotent request. Deployment config and test cluster keep nginx's below it."""
    service_timeout = Settings.model_fields["keep_alive_timeout"].default  # KEEP_ALIVE_TIMEOUT's default
    confs = [("deploy/nginx.conf", (ROOT / "deploy" / "nginx.conf").read_text()), ("tests/cluster.py", NGINX_CONF)]
    for name, conf in confs:
        upstream = re.search(r"upstream upload_service \{+(.*?)\n    \}", conf, re.S).group(1)
        found = re.search(r"^\s*keepalive_timeout\s+(\d+)s;", upstream, re.M)
        assert found and int(found.group(1)) < service_timeout, name


class _Instance:
    """A stand-in for an instance behind nginx on 127.0.0.1: it reads each request whole and notes its method and
    Idempotency-Key; ``dies`` then resets the connection without answering (an instance killed after it
    committed), else it answers 201."""

    def __init__(self, dies: bool) -> None:
        self.dies = dies
        self.seen: list[tuple[str, str | None]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            if not (chunk := conn.recv(65536)):
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        while length and len(body) < int(length.group(1)) and (chunk := conn.recv(65536)):
            body += chunk
        key = re.search(rb"(?im)^idempotency-key: *(\S+)", head)
        self.seen.append((head.split(b" ", 1)[0].decode(), key.group(1).decode() if key else None))
        if self.dies:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
        else:
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self._listener.close()


def _deploy_nginx(folder: Path, instances: list[_Instance]) -> tuple[subprocess.Popen, int]:
    """deploy/nginx.conf as it is, run by Debian's nginx, with only what a test must change
    (``deployed_nginx_conf``; checked with ``nginx -t`` first)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    conf = deployed_nginx_conf(folder, [f"127.0.0.1:{instance.port}" for instance in instances], port)
    (folder / "nginx.conf").write_text(conf)
    command = [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    assert wait_for(lambda: _accepts(port)), "nginx did not start"
    return process, port


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()), reason="nginx not installed")
@pytest.mark.parametrize(("method", "key", "retried"), [
    ("DELETE", None, True), ("PUT", None, True), ("PUT", "client-key-1", True), ("POST", None, False)])
def test_nginx_sends_a_retry_with_the_first_attempts_idempotency_key(tmp_path, method, key, retried) -> None:
    """deploy/nginx.conf: an instance that got a request and died before answering. nginx counts PUT and DELETE as
    idempotent and sends them again to another instance (a PUT when it read the body whole before sending, as
    for a small upload sent in one piece); the retry carries the first attempt's Idempotency-Key, the client's or
    the one nginx made, so the service recognises it instead of storing the upload twice. POST (and PATCH) is
    never sent twice, and gets no key of nginx's."""
    instances = [_Instance(dies=True), _Instance(dies=False), _Instance(dies=False)]
    process, port = _deploy_nginx(tmp_path, instances)
    try:
        headers = f"Idempotency-Key: {key}\r\n" if key else ""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # head and body in one piece
            sock.sendall(f"{method} /api/files/a.txt HTTP/1.1\r\nHost: files\r\n{headers}Content-Length: 5\r\n"
                         f"Connection: close\r\n\r\nhello".encode())
            answer = read_answer(sock)
    finally:
        process.terminate()
        process.wait(10)
        for instance in instances:
            instance.close()
    [(first_method, first_key)] = instances[0].seen  # round robin starts with the first instance
    assert first_method == method
    if key or not retried:
        assert first_key == key
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", first_key or ""), first_key
    retries = instances[1].seen + instances[2].seen
    if retried:
        assert answer.startswith(b"HTTP/1.1 201"), answer
        assert retries == [(method, first_key)]
    else:
        assert answer.startswith(b"HTTP/1.1 502"), answer
        assert retries == []


def test_a_connection_is_reusable_right_after_a_slowly_read_download(make_server) -> None:
    """The server hands a response to the kernel long before a slow client has read it; its keep-alive clock
    starts then. With Hypercorn's default (5 s), a client reading the tail of a download for longer found the
    connection closed under its next request (the mixed load's rare "server disconnected" after a download)."""
    server = make_server()
    data = os.urandom(MiB)  # fits in the socket buffers: the server is done at once
    file = server.client().put("/api/files/slow-read.bin", content=data).json()
    sock = connect(server)
    sock.sendall(request_head(server, file["url"], 0, "GET"))
    time.sleep(6)  # the client is busy; the whole response waits in the buffers
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < len(data):
        answer += sock.recv(1 << 20)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(data)
    sock.sendall(request_head(server, f"/api/files/{file['id']}", 0, "GET"))  # reused at once
    assert read_answer_head(sock).startswith(b"HTTP/1.1 200")
