"""Request bodies that skip h11's buffers (``upload_service.hypercorn_tuning``) still obey HTTP/1.1 framing.

The server hands the middle of a Content-Length body straight to the upload; these tests send bodies the way
real clients do (``Expect: 100-continue``, reads of every size, the next request in the same packet as the
body's tail) over a raw socket and check every byte and every answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from tests.faults import connect, request_head
from tests.servers import TOKENS
from upload_service.hypercorn_tuning import h11_is_as_expected

MiB = 1024 * 1024
pytestmark = pytest.mark.process  # the CLI's server, where the tuning applies


def read_response(sock: socket.socket, buffered: bytearray) -> tuple[int, bytes]:
    """One response (status, body) from ``sock``; bytes read past it stay in ``buffered``."""
    while b"\r\n\r\n" not in buffered:
        data = sock.recv(65536)
        assert data, f"connection closed before a whole head: {bytes(buffered)!r}"
        buffered += data
    head, _, _ = bytes(buffered).partition(b"\r\n\r\n")
    del buffered[: len(head) + 4]
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffered) < length:
        data = sock.recv(65536)
        assert data, "connection closed inside a body"
        buffered += data
    body = bytes(buffered[:length])
    del buffered[:length]
    return status, body


def test_a_body_in_pieces_after_100_continue_then_a_pipelined_request(make_server) -> None:
    server = make_server()
    data = os.urandom(3 * MiB + 12_345)
    sock = connect(server)
    buffered = bytearray()
    sock.sendall(request_head(server, "/api/files/pieces.bin", len(data), headers={"Expect": "100-continue"}))
    status, _ = read_response(sock, buffered)
    assert status == 100
    sizes = [1, 7, 4096, 65_536, 300_000, 1, 1_000_000, 13]
    offset, turn = 0, 0
    while len(data) - offset > 100:  # irregular reads, each arriving on its own
        size = min(sizes[turn % len(sizes)], len(data) - offset - 100)
        sock.sendall(data[offset:offset + size])
        offset += size
        turn += 1
        if turn % 3 == 0:
            time.sleep(0.01)
    host = server.url.removeprefix("http://")
    listing = f"GET /api/files HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKENS['alice']}\r\n\r\n"
    sock.sendall(data[offset:] + listing.encode())  # the body's tail and the next request in one packet
    status, body = read_response(sock, buffered)
    assert status == 201, body
    stored = json.loads(body)
    assert stored["size"] == len(data)
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    status, body = read_response(sock, buffered)
    assert status == 200, body
    assert stored["id"] in {file["id"] for file in json.loads(body)["files"]}
    sock.close()
    assert server.client().get(f"/api/files/{stored['id']}/content").content == data


def test_a_body_longer_than_declared_leaves_the_rest_to_be_read_as_a_request(make_server) -> None:
    """The declared length ends the body even when the bytes after it arrive in the same read."""
    server = make_server()
    data = os.urandom(2 * MiB)
    sock = connect(server)
    buffered = bytearray()
    sock.sendall(request_head(server, "/api/files/exact.bin", len(data)))
    sock.sendall(data[: MiB])
    time.sleep(0.05)
    sock.sendall(data[MiB:] + b"this is not HTTP\r\n\r\n")
    status, body = read_response(sock, buffered)
    assert status == 201, body
    assert json.loads(body)["sha256"] == hashlib.sha256(data).hexdigest()
    status, _ = read_response(sock, buffered)
    assert status == 400  # the extra bytes were parsed as a (malformed) next request, not stored
    sock.close()


def test_the_locked_h11_has_the_internals_the_direct_path_uses() -> None:
    """Fails when an h11 upgrade moves them: the server then quietly leaves bodies to h11 (slower, still right)."""
    assert h11_is_as_expected()
