"""What an upload really is, from its first bytes, and whether ``ALLOWED``/``DENIED_CONTENT_TYPES`` let it in.

The client's ``Content-Type`` and the file's extension are claims anyone can make up, so the decision uses
libmagic (the database behind ``file(1)``, through python-magic; Debian package ``libmagic1``) on the first
``SNIFF_BYTES`` of the content, before any byte is stored. Patterns are globs (``image/*``); a type matching a
denied pattern is refused even when it is also allowed; with an allowlist, anything not on it is refused.

With either list set, the sniffed type is the type the file is stored and served with (without one, nothing
is sniffed at upload and the claimed type is stored). Only where the bytes say nothing more specific
than "some text" or "some binary" (``text/plain``, ``application/octet-stream``, empty) is the client's
well-formed label kept (``text/csv``, a vendor type): the policy still decided on what was sniffed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from .errors import StartupError, UploadRejected
from .files import UploadInfo
from .settings import Settings, parse_list

SNIFF_BYTES = 64 * 1024
GENERIC = frozenset({"application/octet-stream", "text/plain", "application/x-empty", "inode/x-empty"})


class Sniffer:
    """libmagic in one thread of its own, from ``open`` (at the service's start) to ``close`` (at its stop).

    One thread, not a pool: each libmagic handle maps its database (several MiB), and a handle is not
    thread-safe, so a handle in every thread of a pool would grow the server by that much per thread; one sniff
    takes well under a millisecond. The handle is made on first use, in that thread.
    """

    def __init__(self) -> None:
        self._thread: ThreadPoolExecutor | None = None
        self._magic: Any = None

    def open(self) -> None:
        """Start the thread and refuse to start the service without libmagic, rather than failing every upload."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="libmagic")
        try:
            self._thread.submit(self.identify, b"%PDF-1.4").result()
        except ImportError as error:  # python-magic raises ImportError when libmagic itself is missing
            raise StartupError(f"libmagic is missing ({error}): install it (Debian: apt-get install libmagic1)"
                               ) from None

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.shutdown)

    def identify(self, head: bytes) -> str:
        """libmagic's MIME type for these bytes (``application/x-empty`` for none), in the calling thread.
        Blocking: a few milliseconds. Call it from one thread only (``sniff`` does, from the sniffer's own)."""
        if not head:
            return "application/x-empty"
        if self._magic is None:
            import magic  # imported on first use: the service starts without paying for libmagic's database

            self._magic = magic.Magic(mime=True)
        return (self._magic.from_buffer(head) or "application/octet-stream").lower()

    async def sniff(self, head: bytes) -> str:
        """``identify`` in the sniffer's thread: its text analysis takes milliseconds the event loop must not wait."""
        if self._thread is None:
            raise RuntimeError("the sniffer is not open: the service has not started")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self.identify, head)


async def peek(chunks: AsyncIterator[bytes], size: int = SNIFF_BYTES) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first ``size`` bytes of a stream (fewer if it is shorter) and the whole stream, head included."""
    iterator = aiter(chunks)
    head = bytearray()
    ended = False
    while len(head) < size:
        chunk = await anext(iterator, None)
        if chunk is None:
            ended = True
            break
        head += chunk

    async def whole() -> AsyncIterator[bytes]:
        if head:
            yield bytes(head)
        if not ended:
            async for chunk in iterator:
                yield chunk

    return bytes(head[:size]), whole()


async def head_of(chunks: AsyncIterator[bytes], size: int = SNIFF_BYTES) -> bytes:
    """The first ``size`` bytes of a stream of stored bytes, which is then closed."""
    head = bytearray()
    try:
        async for chunk in chunks:
            head += chunk
            if len(head) >= size:
                break
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    return bytes(head[:size])


@dataclass(frozen=True)
class ContentTypePolicy:
    """``ALLOWED_CONTENT_TYPES`` and ``DENIED_CONTENT_TYPES`` of one service, and its sniffer."""

    allowed: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()
    sniffer: Sniffer = field(default_factory=Sniffer, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ContentTypePolicy:
        return cls(tuple(item.lower() for item in parse_list(settings.allowed_content_types)),
                   tuple(item.lower() for item in parse_list(settings.denied_content_types)))

    @property
    def active(self) -> bool:
        """Whether uploads are judged at all: without a list, nothing is sniffed and the claimed type is kept
        (downloads still sniff what they would show inline, see ``serving``)."""
        return bool(self.allowed or self.denied)

    def open(self) -> None:
        """Start sniffing, if uploads are judged at all: libmagic is loaded (and needed) only then."""
        if self.active:
            self.sniffer.open()

    async def close(self) -> None:
        await self.sniffer.close()

    def permits(self, content_type: str) -> bool:
        if any(fnmatchcase(content_type, pattern) for pattern in self.denied):
            return False
        return not self.allowed or any(fnmatchcase(content_type, pattern) for pattern in self.allowed)

    def _terms(self) -> str:
        terms = [f"allowed: {', '.join(self.allowed)}"] if self.allowed else []
        terms += [f"refused: {', '.join(self.denied)}"] if self.denied else []
        return f" ({'; '.join(terms)})" if terms else ""

    async def decide(self, info: UploadInfo, head: bytes) -> UploadInfo:
        """``info`` with the type to store, from ``head`` (the content's first bytes); 415 when not permitted."""
        sniffed = await self.sniffer.sniff(head)
        if not self.permits(sniffed):
            raise UploadRejected(f"{info.filename!r} is {sniffed} (judged from its content, not its name or "
                                 f"declared type), which this service does not accept{self._terms()}", status=415,
                                 reason="content_type_refused")
        return replace(info, content_type=info.content_type if sniffed in GENERIC else sniffed)
