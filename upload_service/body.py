"""Request bodies read straight from the ASGI server, with backpressure, limits and an idle timeout.

Quart drains ``receive()`` into an unbounded buffer as fast as the network delivers. For the service's API
paths an ASGI middleware (wrapping ``app.asgi_app``, so it works inside a host app too) hands Quart an empty
body and keeps the real ``receive`` for the handler. The handler then pulls one message at a time, only
after storage took the previous chunk; Hypercorn's bounded app queue stops reading the socket meanwhile, so
memory per upload stays at a small window whatever the file size and storage speed.

Two clocks cut off a client that holds a connection open without sending: the idle timeout (nothing at all
for ``UPLOAD_IDLE_TIMEOUT``) and a minimum rate (``UPLOAD_MIN_RATE``; a slowloris trickling a byte now and
then never goes idle). Both count only the time spent waiting for the client, never the time the server spent
storing what arrived, so a slow disk or S3 never makes a fast client look slow. The rate is a window, not an
average over the whole body: what a client sent fast earlier buys it at most ``UPLOAD_IDLE_TIMEOUT`` of
waiting later (before, each KiB bought a second, so 1 GB sent quickly let the body trickle on for days).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from quart import Request

from .errors import Problem

STREAM_KEY = "upload_service.body_stream"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
LINGER_SECONDS = 30.0
LINGER_BYTES = 256 * 1024 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]  # Quart's asgi_app among others: it types scopes as TypedDicts, not dicts


class ClientDisconnected(Exception):
    """The client went away before its body was complete."""


class BodyStream:
    """The real ``receive`` of one request, read only when the handler asks for the next chunk."""

    def __init__(self, receive: Receive, declared_length: int | None = None, min_rate: int = 0) -> None:
        self._receive = receive
        self._declared = declared_length
        self._min_rate = min_rate
        self._received = 0
        self._credit: float | None = None  # seconds the client may still keep the server waiting (min_rate on)
        self._stalled = False
        self._complete = False
        self._peeked: list[bytes] = []
        self._gave_quart_its_body = False
        self._disconnected = asyncio.Event()

    async def quart_receive(self) -> dict[str, Any]:
        """What Quart's own receive loop sees: an empty body, then a disconnect only if the client left."""
        if not self._gave_quart_its_body:
            self._gave_quart_its_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    def _wait_budget(self, idle_timeout: float) -> tuple[float, bool]:
        """How long to wait for the next message, and whether the minimum rate (not idleness) sets it.

        The client holds a credit of waiting time, at first ``idle_timeout`` seconds: every second spent
        waiting for it costs a second, every ``min_rate`` bytes it sends earn one back, and the credit never
        exceeds ``idle_timeout``. So over any ``T`` seconds of waiting a body must send at least ``min_rate`` times
        ``T - idle_timeout`` bytes, however much it sent before.
        """
        if not self._min_rate:
            return idle_timeout, False
        if self._credit is None:
            self._credit = idle_timeout
        return (self._credit, True) if self._credit < idle_timeout else (idle_timeout, False)

    def _earn(self, waited: float, size: int, idle_timeout: float) -> None:
        if self._credit is not None:
            self._credit = min(idle_timeout, self._credit - waited + size / self._min_rate)

    async def chunks(self, idle_timeout: float) -> AsyncIterator[bytes]:
        while self._peeked:  # what ``peek`` read ahead comes first
            yield self._peeked.pop(0)
        async for body in self._arriving(idle_timeout):
            yield body

    async def peek(self, size: int, idle_timeout: float) -> bytes:
        """The body's first ``size`` bytes (fewer if it is shorter), read ahead and kept for ``chunks``."""
        have = sum(map(len, self._peeked))
        if have < size and not self._complete:
            arriving = self._arriving(idle_timeout)
            try:
                async for body in arriving:
                    self._peeked.append(body)
                    have += len(body)
                    if have >= size:
                        break
            finally:
                await arriving.aclose()
        return b"".join(self._peeked)[:size]

    async def _arriving(self, idle_timeout: float) -> AsyncGenerator[bytes]:
        loop = asyncio.get_running_loop()
        while not self._complete:
            budget, by_rate = self._wait_budget(idle_timeout)
            started = loop.time()
            try:
                async with asyncio.timeout(max(budget, 0.0)):  # cheaper per chunk than wait_for (no task)
                    message = await self._receive()
            except TimeoutError:
                self._stalled = True
                raise self._too_slow(idle_timeout, by_rate) from None
            if message["type"] == "http.disconnect":
                self._disconnected.set()
                raise ClientDisconnected()
            self._complete = not message.get("more_body", False)
            body = message.get("body", b"")
            self._earn(loop.time() - started, len(body), idle_timeout)
            if body:
                self._received += len(body)
                yield body

    def _too_slow(self, idle_timeout: float, by_rate: bool) -> Problem:
        if by_rate:
            return Problem(408, f"the body arrived slower than {self._min_rate} bytes per second (sending faster "
                                f"before earns at most {idle_timeout:g} seconds of waiting); the upload was dropped",
                           reason="too_slow")
        return Problem(408, f"no data received for {idle_timeout:g} seconds; the upload was dropped",
                       reason="idle_timeout")

    def draining_send(self, send: Send) -> Send:
        """``send`` that, before an answer given early (413, 507, 401...), reads and drops the rest of the body.

        Many clients write their whole body before reading; if the server answered and closed first, they
        would never see the answer. Draining first (nginx calls it lingering) lets them read it, and keeps the
        connection reusable. A stalled client, or one with more than ``LINGER_BYTES`` still to send, is not
        waited for: the answer goes out at once and the connection closes.
        """

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                await self._discard_rest()
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await self._send_last(send, message)
            else:
                await send(message)

        return wrapped

    async def _send_last(self, send: Send, message: dict[str, Any]) -> None:
        """The answer's last message. If the body is still arriving, Hypercorn ends the stream on it and queues a
        disconnect for the app, which waits for room while the app's queue is full of body nobody reads: the
        send, the request's tasks and its buffered chunks would then wait until the server stops. Reading
        (and dropping) that queue meanwhile lets the send finish."""
        if self._complete or self._disconnected.is_set():
            await send(message)
            return
        dropping = asyncio.ensure_future(self._drop_until_disconnect())
        try:
            await send(message)
        finally:
            dropping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dropping

    async def _drop_until_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._disconnected.set()

    async def _discard_rest(self) -> None:
        if self._complete or self._stalled or self._disconnected.is_set():
            return
        if self._declared is not None and self._declared - self._received > LINGER_BYTES:
            return
        limit = self._received + LINGER_BYTES
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                async for _ in self.chunks(idle_timeout=5.0):
                    if self._received > limit:
                        return
        except (TimeoutError, ClientDisconnected, Problem):
            pass


class StreamingBodyMiddleware:
    """Wraps an ASGI app so that body-carrying requests under any of ``prefixes`` stream to their handler."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...], min_rate: int = 0) -> None:
        self.app = app
        self.prefixes = prefixes
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in BODY_METHODS and self._matches(scope):
            stream = BodyStream(receive, _content_length(scope), self.min_rate)
            await self.app({**scope, STREAM_KEY: stream}, stream.quart_receive, stream.draining_send(send))
        else:
            await self.app(scope, receive, send)

    def _matches(self, scope: Scope) -> bool:
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        return path.startswith(self.prefixes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _buffered_body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.body:
        yield chunk


async def peek_body(request: Request, size: int, idle_timeout: float) -> bytes | None:
    """The first ``size`` bytes of a streamed body, left in place for the handler; None for a body Quart buffers
    (a route outside the streamed paths)."""
    stream = request.scope.get(STREAM_KEY)
    return await stream.peek(size, idle_timeout) if isinstance(stream, BodyStream) else None


def body_chunks(request: Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """The request body as chunks: streamed when the middleware is in place, else Quart's buffered body."""
    stream = request.scope.get(STREAM_KEY)
    if isinstance(stream, BodyStream):
        return stream.chunks(idle_timeout)
    return _buffered_body(request)


async def limited(chunks: AsyncIterator[bytes], max_size: int, what: str = "upload") -> AsyncIterator[bytes]:
    """Pass chunks through, answering 413 as soon as more than ``max_size`` bytes have arrived."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > max_size:
            raise too_large(max_size, what)
        yield chunk


def too_large(max_size: int, what: str = "upload") -> Problem:
    return Problem(413, f"the {what} is larger than the limit of {max_size} bytes", reason="too_large",
                   max_size=max_size)


def check_declared_length(request: Request, max_size: int, what: str = "upload") -> None:
    """Refuse a declared Content-Length over the limit before reading a byte."""
    if request.content_length is not None and request.content_length > max_size:
        raise too_large(max_size, what)


async def read_all(request: Request, max_size: int, idle_timeout: float, what: str = "body") -> bytearray:
    """Read a whole body into one buffer (no second copy), refusing it with 413 past ``max_size``."""
    check_declared_length(request, max_size, what)
    parts = bytearray()
    async for chunk in limited(body_chunks(request, idle_timeout), max_size, what):
        parts += chunk
    return parts
