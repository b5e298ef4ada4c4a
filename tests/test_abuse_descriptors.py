"""Issue 18, finding 1: what one signed-in user's single request could hold of the server.

A multipart request of many files over 1 MiB, stalled before its end, kept one open descriptor per staged file
until the batch committed, so one request could take all of a process's descriptors (other users then got 500
and reset connections); its form fields were not counted at all; and the minimum-rate check credited a second
of waiting for every KiB received, so a client that sent 1 GB quickly could then hold its request open for
days at a byte a minute. Each test runs the attack against a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import threading
import time

import pytest

from upload_service.multipart import MAX_FORM_FIELDS
from upload_service.testing import TEST_TOKEN

from .conftest import staging_entries, stored_files
from .faults import connect, read_answer, received, request_head, wait_for
from .servers import Server

MiB = 1024 * 1024
PART = b"p" * (MiB + 100 * 1024)  # past the 1 MiB write buffer: each part goes to a staging file as it arrives
BOUNDARY = "abuse-boundary"


def _open_descriptors(pid: int) -> list[int]:
    return sorted(int(name) for name in os.listdir(f"/proc/{pid}/fd"))


def _part_head(number: int) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{number}.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def _stall_many_parts(server: Server, parts: int) -> socket.socket:
    """alice's multipart POST of ``parts`` files of 1.1 MB at full speed, then the head of one more file and no
    end: the request stays open with every file staged, as long as the server lets it."""
    whole = sum(len(_part_head(number)) + len(PART) + 2 for number in range(parts + 1)) + len(BOUNDARY) + 6
    sock = connect(server)
    sock.sendall(request_head(server, "/api/upload", whole, "POST",
                              {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}))
    for number in range(parts):
        sock.sendall(_part_head(number) + PART + b"\r\n")
    sock.sendall(_part_head(parts) + b"the next file starts, and the body stalls here")
    return sock


def _wait_until_staged(server: Server, sock: socket.socket, parts: int) -> None:
    """The server has read the whole stalled body and made a staging folder for every complete file."""
    assert wait_for(lambda: received(sock) and len(staging_entries(server)) >= parts, timeout=30), \
        f"{len(staging_entries(server))} of {parts} files staged"


def _settled_descriptors(server: Server) -> list[int]:
    """The server's descriptors once idle: a first upload and listing done (whatever they open lazily is open)
    and their connection closed on both sides."""
    with server.client() as client:
        assert client.put("/api/files/warm-up.bin", content=b"w" * 2 * MiB).status_code == 201
        assert client.get("/api/files").status_code == 200
    pid = server.process.pid
    quiet: list[list[int]] = []

    def settled() -> bool:
        quiet.append(_open_descriptors(pid))
        return len(quiet) > 2 and quiet[-1] == quiet[-2] == quiet[-3]

    assert wait_for(settled, timeout=10)
    return quiet[-1]


def _limit_leaving(descriptors: list[int], free: int) -> int:
    """The RLIMIT_NOFILE that leaves exactly ``free`` descriptor numbers to open beside ``descriptors``."""
    taken, limit = set(descriptors), 0
    while free:
        free -= limit not in taken
        limit += 1
    return limit


@pytest.mark.process
def test_a_stalled_request_of_many_files_leaves_descriptors_for_other_users(make_server) -> None:
    """The issue's attack under a low descriptor limit: 48 files of 1.1 MB, then the client stalls, with the
    process allowed just enough descriptors for one per file. Another user's 2 MiB upload and listing must still
    work (they got 500 and a reset connection when every staged file kept its staging file open)."""
    parts = 48
    server = make_server()
    pid = server.process.pid
    baseline = _settled_descriptors(server)
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (_limit_leaving(baseline, parts + 2), hard))
    attacker = _stall_many_parts(server, parts)
    _wait_until_staged(server, attacker, parts)
    with server.client("bob") as victim:
        victim.timeout = 10  # what waits for a descriptor (accept, a staging file) fails the test, not hangs it
        stored = victim.put("/api/files/victim.bin", content=os.urandom(2 * MiB))
        assert stored.status_code == 201, stored.text
        listing = victim.get("/api/files")
        assert listing.status_code == 200 and [file["filename"] for file in listing.json()["files"]] == ["victim.bin"]
    attacker.close()  # the client gives up: its batch is dropped, nothing of it is kept
    assert wait_for(lambda: staging_entries(server) == [], timeout=10)
    assert len(stored_files(server, "files/")) == 2  # alice's warm-up and bob's file


@pytest.mark.process
def test_staged_files_of_a_stalled_request_hold_no_descriptor(make_server) -> None:
    """Descriptors per request are O(1) whatever its number of files: a stalled request of 40 files of 1.1 MB
    keeps its connection and at most the file being written open, not one staging file per file (41 before)."""
    parts = 40
    server = make_server()
    pid = server.process.pid
    baseline = len(_settled_descriptors(server))
    attacker = _stall_many_parts(server, parts)
    _wait_until_staged(server, attacker, parts)
    held: list[int] = []
    assert wait_for(lambda: held.append(len(_open_descriptors(pid)) - baseline) or held[-1] <= 3, timeout=5), \
        f"the stalled request holds {held[-1]} descriptors"
    attacker.close()
    assert wait_for(lambda: staging_entries(server) == [], timeout=10)
    assert wait_for(lambda: len(_open_descriptors(pid)) <= baseline, timeout=10)


def test_a_client_that_sent_much_quickly_cannot_then_trickle_for_long(make_server) -> None:
    """8 MiB at full speed, then a byte whenever the server has not answered for 0.2 s: with a credit of one
    second per KiB received, the 8 MiB bought over two hours of trickling. The credit is capped (at
    UPLOAD_IDLE_TIMEOUT), so the client is cut off with 408 within seconds and nothing is kept."""
    server = make_server(upload_idle_timeout="1s", upload_min_rate="1KiB")
    sock = connect(server)
    sock.sendall(request_head(server, "/api/files/trickle.bin", 64 * MiB))
    sock.sendall(b"t" * 8 * MiB)
    assert wait_for(lambda: received(sock), timeout=10)
    started = time.monotonic()
    sock.settimeout(0.2)
    answer = b""
    while not answer and time.monotonic() - started < 10:
        try:
            answer = sock.recv(65536)  # the server's answer, or 0.2 s without one
        except TimeoutError:
            sock.sendall(b"x")
    cut_after = time.monotonic() - started
    assert answer, "still trickling after 10 s, with no answer"
    assert cut_after < 5
    sock.settimeout(5)
    answer += read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"slower than 1024 bytes per second" in answer
    assert wait_for(lambda: staging_entries(server) == [])
    assert stored_files(server) == []
    assert server.client().put("/api/files/after.bin", content=b"a" * 1000).status_code == 201


def test_form_fields_of_a_multipart_request_are_bounded(make_server) -> None:
    """Files per request are bounded (MAX_FILES_PER_REQUEST); the form fields beside them must be too, or one
    request of a million empty fields keeps the server parsing for as long as the client likes. 413, nothing
    stored."""
    server = make_server()
    fields = "".join(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"field{number}\"\r\n\r\nv\r\n"
                     for number in range(5000))
    body = (fields + f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\nhello\r\n--{BOUNDARY}--\r\n").encode()
    client = server.client()
    response = client.post("/api/upload", content=body,
                           headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["max_fields"] == MAX_FORM_FIELDS
    assert stored_files(server) == [] and staging_entries(server) == []
    few = client.post("/api/upload", data={f"field{number}": "v" for number in range(MAX_FORM_FIELDS)},
                      files={"file": ("a.txt", b"hello")})
    assert few.status_code == 201, few.text


def _request_tasks(running) -> list[str]:
    """The server loop's tasks that serve a request (Quart's connection tasks), by name."""
    async def names() -> list[str]:
        return [task.get_coro().__qualname__ for task in asyncio.all_tasks()
                if "ASGIHTTPConnection" in task.get_coro().__qualname__]
    return running.run(names())


def test_answers_given_before_a_huge_body_leave_no_request_behind(upload_service_factory):
    """Attack: many clients declare a huge body and keep sending after the service refused it (413 over the size,
    401 without credentials). The service answers at once without reading the rest; its request used to wait
    forever to tell the app about the disconnect (the app's queue full of unread body), keeping its tasks and
    buffered chunks until the server stopped. Every request must finish once its client is gone."""
    running = upload_service_factory(max_upload_size="1MiB")
    host, port = running.url.removeprefix("http://").split(":")
    auth = f"Authorization: Bearer {TEST_TOKEN}\r\n"

    def client(credentials: str) -> None:
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(f"PUT /api/files/x.bin HTTP/1.1\r\nHost: x\r\n{credentials}"
                         f"Content-Length: {1 << 30}\r\n\r\n".encode())
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                for _ in range(1024):
                    sock.sendall(bytes(65536))

    threads = [threading.Thread(target=client, args=(auth,)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: _request_tasks(running) == [], timeout=10)
