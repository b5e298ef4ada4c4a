"""Helpers of the fault tests: raw sockets that misbehave on purpose, the server's processes and memory."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .servers import TOKENS, Server


def connect(server: Server, timeout: float = 30) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def request_head(server: Server, path: str, length: int | None, method: str = "PUT",
                 headers: dict[str, str] | None = None) -> bytes:
    """The head of a request as alice; ``length`` None means a chunked body."""
    host = server.url.removeprefix("http://")
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
            f"{size}{extra}\r\n").encode()


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out)."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return answer


def read_answer_head(sock: socket.socket) -> bytes:
    """The status line and headers of the next answer (b"" if the server closed the connection)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return head


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def received(sock: Any) -> bool:
    """Whether the server has read every byte sent on ``sock`` (a connection on 127.0.0.1): none is waiting for
    its acknowledgement on this side, none is unread in the server's socket (their queues in /proc/net/tcp)."""
    here, there = sock.getsockname()[1], sock.getpeername()[1]
    queues: dict[tuple[str, str], tuple[int, int]] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        sent, unread = (int(size, 16) for size in fields[4].split(":"))
        queues[fields[1], fields[2]] = (sent, unread)
    ours, theirs = f"0100007F:{here:04X}", f"0100007F:{there:04X}"  # 127.0.0.1, as the kernel writes it
    return queues.get((ours, theirs), (1, 0))[0] == 0 and queues.get((theirs, ours), (0, 1))[1] == 0


def worker_pids(server: Server) -> list[int]:
    """The Hypercorn worker processes under the server's master (WORKERS > 1)."""
    out = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True).stdout
    pids = []
    for pid in map(int, out.split()):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except FileNotFoundError:
            pass
    return pids


def rss_mib(pid: int) -> float:
    """Resident memory of one process now (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
