"""A small clamd client on asyncio streams: ``zINSTREAM`` (length-prefixed chunks, a zero-length end) and
``zVERSION``. Written here because the protocol is a few lines and no widely used async client is maintained."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterable
from dataclasses import dataclass
from urllib.parse import urlsplit

CHUNK = 64 * 1024  # far below any StreamMaxLength clamd allows; each chunk is sent and drained in turn
REPLY_LIMIT = 4096  # clamd's replies are one short line
SIZE_LIMIT_REPLY = "INSTREAM size limit exceeded"


class ClamdError(Exception):
    """clamd could not be reached, hung up, or answered an error: the file was not scanned."""


class StreamTooLarge(ClamdError):
    """The file is longer than clamd's ``StreamMaxLength``: clamd stopped reading it."""


@dataclass(frozen=True)
class Clamd:
    """Where clamd listens: a unix socket path, or a TCP host and port."""

    path: str | None = None
    host: str | None = None
    port: int = 3310

    @classmethod
    def from_url(cls, url: str) -> Clamd:
        """``unix:///run/clamav/clamd.ctl`` or ``tcp://127.0.0.1:3310``; ValueError says what is wrong."""
        parts = urlsplit(url.strip())
        if parts.scheme == "unix":
            if parts.netloc or not parts.path.startswith("/"):
                raise ValueError("a unix socket is unix:///absolute/path (three slashes)")
            return cls(path=parts.path)
        if parts.scheme == "tcp":
            try:
                port = parts.port
            except ValueError:
                raise ValueError("the port must be a number from 1 to 65535") from None
            if not parts.hostname or parts.path not in ("", "/") or port == 0:
                raise ValueError("a TCP address is tcp://host:port")
            return cls(host=parts.hostname, port=port or 3310)
        raise ValueError("use unix:///path/to/clamd.ctl or tcp://host:port")

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.path else f"tcp://{self.host}:{self.port}"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self.path:
                return await asyncio.open_unix_connection(self.path)
            return await asyncio.open_connection(self.host, self.port)
        except OSError as error:
            raise ClamdError(f"clamd at {self} cannot be reached: {error}") from error

    async def version(self) -> str:
        """clamd's ``VERSION`` answer (ClamAV's version and its database's)."""
        reader, writer = await self._connect()
        try:
            writer.write(b"zVERSION\0")
            await writer.drain()
            return await _reply(reader, self)
        finally:
            await _close(writer)

    async def instream(self, chunks: AsyncIterable[bytes]) -> str | None:
        """Send ``chunks`` to clamd and return the signature it found, or None when the stream is clean.

        Never holds more than one storage chunk: each is cut to ``CHUNK`` bytes, written and drained. clamd's
        answer is awaited from the start, so an early one (past ``StreamMaxLength``) stops the sending."""
        reader, writer = await self._connect()
        answer = asyncio.ensure_future(_reply(reader, self))
        try:
            try:
                writer.write(b"zINSTREAM\0")
                async for chunk in chunks:
                    view = memoryview(chunk)
                    for start in range(0, len(view), CHUNK):
                        await asyncio.sleep(0)  # let clamd's early answer, if any, arrive
                        if answer.done():
                            return _verdict(answer.result(), self)
                        piece = view[start:start + CHUNK]
                        writer.write(struct.pack(">I", len(piece)))
                        writer.write(piece)
                        await writer.drain()
                writer.write(struct.pack(">I", 0))
                await writer.drain()
            except ConnectionError as error:
                try:
                    reply = await answer
                except ClamdError:
                    raise ClamdError(f"clamd at {self} hung up while reading the file (is it longer than "
                                     f"clamd's StreamMaxLength?): {error}") from error
                return _verdict(reply, self)
            return _verdict(await answer, self)
        finally:
            answer.cancel()
            await _close(writer)


async def _reply(reader: asyncio.StreamReader, clamd: Clamd) -> str:
    try:
        data = await reader.readuntil(b"\0")
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            raise ClamdError(f"clamd at {clamd} closed the connection without an answer") from None
        data = error.partial
    except asyncio.LimitOverrunError:
        raise ClamdError(f"clamd at {clamd} answered something too long to be a reply") from None
    except OSError as error:
        raise ClamdError(f"clamd at {clamd} failed: {error}") from error
    return data[:REPLY_LIMIT].rstrip(b"\0\n").decode("utf-8", "replace")


def _verdict(reply: str, clamd: Clamd) -> str | None:
    """``stream: OK`` -> None; ``stream: <Signature> FOUND`` -> the signature; anything else is an error."""
    if reply == "stream: OK":
        return None
    if reply.startswith("stream: ") and reply.endswith(" FOUND"):
        return reply[len("stream: "):-len(" FOUND")]
    if reply.startswith(SIZE_LIMIT_REPLY):
        raise StreamTooLarge(f"clamd at {clamd}: {reply}")
    raise ClamdError(f"clamd at {clamd} answered {reply!r}")


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
