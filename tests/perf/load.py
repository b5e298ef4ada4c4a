"""A small asyncio HTTP/1.1 load generator: keep-alive connections PUTting small bodies, latency per request.

Written on raw sockets so the client costs far less CPU than the server it measures.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Collection


async def _connection(host: str, port: int, request: Callable[[], bytes], deadline: float, latencies: list[float],
                      errors: list[int], ok: Collection[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status not in ok:
                errors.append(status)
    finally:
        writer.close()


async def put_load(host: str, port: int, path: str, headers: dict[str, str], body: bytes, concurrency: int,
                   seconds: float, ok: Collection[int] = (201,), *, keyed: bool = False) -> dict[str, float]:
    """PUT ``body`` to ``path`` over ``concurrency`` keep-alive connections for ``seconds``; an answer whose status
    is not in ``ok`` counts as an error (nginx WebDAV answers 204 when a PUT replaces the file). ``keyed``: each
    request carries a new ``Idempotency-Key``, as every request does behind the shipped nginx config."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request_head = f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n{head}"
    fixed = (request_head + "\r\n").encode() + body
    prefix, numbers = f"{request_head}Idempotency-Key: {uuid.uuid4().hex}-".encode(), itertools.count()
    request = (lambda: b"%s%d\r\n\r\n%s" % (prefix, next(numbers), body)) if keyed else (lambda: fixed)
    latencies: list[float] = []
    errors: list[int] = []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(_connection(host, port, request, deadline, latencies, errors, ok)
                           for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0,
    }
