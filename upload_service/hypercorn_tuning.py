"""Hypercorn knobs that its ``Config`` does not expose, set in every process that serves.

Both make a large request body cheaper for the event loop, which is what bounds upload speed here: Python
handles every ASGI message and copies every byte several times before the handler sees it.
"""

from __future__ import annotations

import h11
import hypercorn.asyncio.tcp_server
import hypercorn.protocol
from h11._readers import ContentLengthReader
from hypercorn.events import Event, RawData
from hypercorn.protocol.events import Body
from hypercorn.protocol.h11 import STREAM_ID, H11Protocol
from hypercorn.protocol.http_stream import HTTPStream

RECEIVE_SIZE = 1024 * 1024


class DirectBodyH11Protocol(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol, handing the middle of a Content-Length body straight to the request.

    h11 appends each read to its buffer, slices it out again and wraps it in an event, and Hypercorn copies
    that into the ASGI message: three copies and an event per read. Once a request's body has started (h11 is
    in ``SEND_BODY`` with a Content-Length reader, its buffer empty, no ``100 Continue`` pending), a read that
    ends before the body does is passed on as it came, and h11's count of the bytes still due is lowered to
    match. The body's first and last bytes, chunked bodies and everything else go through h11 as before, so
    h11 still checks the framing and ends the message.
    """

    async def handle(self, event: Event) -> None:
        if isinstance(event, RawData) and await self._passed_through(event.data):
            return
        await super().handle(event)

    async def _passed_through(self, data: bytes) -> bool:
        connection = self.connection
        reader = getattr(connection, "_reader", None)
        if (
            type(reader) is not ContentLengthReader
            or not 0 < len(data) < reader._remaining
            or not isinstance(self.stream, HTTPStream)
            or type(connection) is not h11.Connection
            or connection.their_state is not h11.SEND_BODY
            or connection.they_are_waiting_for_100_continue
            or len(connection._receive_buffer)
        ):
            return False
        reader._remaining -= len(data)
        await self.stream.handle(Body(stream_id=STREAM_ID, data=data))
        return True


def h11_is_as_expected() -> bool:
    """Whether this h11 keeps a Content-Length body's state where ``DirectBodyH11Protocol`` looks for it.

    Those are h11's private attributes; a release that moved them must leave bodies to h11, not break them.
    """
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    if not isinstance(connection.next_event(), h11.Request):
        return False
    reader = getattr(connection, "_reader", None)
    buffer = getattr(connection, "_receive_buffer", None)
    return (type(reader) is ContentLengthReader and getattr(reader, "_remaining", None) == 10
            and buffer is not None and len(buffer) == 0 and connection.their_state is h11.SEND_BODY)


def tune_hypercorn() -> None:
    """Read up to ``RECEIVE_SIZE`` bytes per socket read (Hypercorn asks for 64 KiB) and pass bodies directly.

    Each read becomes one ASGI message that passes through Hypercorn's queue and the upload pipeline; at
    64 KiB a 1 GiB upload is 16,000 of them. With uvloop a read returns at most 256 KiB (its buffer), so a
    GiB is about 4,000 messages; memory grows by Hypercorn's queue of ten such messages per request.
    """
    hypercorn.asyncio.tcp_server.MAX_RECV = RECEIVE_SIZE
    if h11_is_as_expected():
        hypercorn.protocol.H11Protocol = DirectBodyH11Protocol  # type: ignore[misc]
