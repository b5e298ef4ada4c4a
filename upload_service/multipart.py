"""Streaming multipart/form-data: python-multipart's push parser turned into parts you can pull from.

Each incoming chunk is fed to the parser, which reports part boundaries, headers and data through callbacks;
the callbacks only queue events, and the async side pulls the next chunk from the network when the queue is
empty. So a part's bytes flow to storage as they arrive, with nothing but the current chunk held.

A part's headers are gathered here, so they are bounded here too (size and count), whatever python-multipart
version is installed: only recent ones bound header lines themselves, and a header line that never ends would
otherwise grow in memory for as long as a client sends it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import Problem

MAX_FIELD_SIZE = 64 * 1024
MAX_PART_HEADER_BYTES = 16 * 1024  # one part's header names and values together (a browser sends ~150 bytes)
MAX_PART_HEADERS = 16
MAX_FORM_FIELDS = 64  # parts that are not files (fields, empty file controls); files count against their own limit


def check_field_count(count: int) -> None:
    """413 for a form with more than ``MAX_FORM_FIELDS`` parts that are not files: each costs parsing however
    small it is, so a body of a million empty fields must not be read to its end."""
    if count > MAX_FORM_FIELDS:
        raise Problem(413, f"a form may carry at most {MAX_FORM_FIELDS} fields beside its files; nothing of this "
                           "request was stored", reason="too_many_fields", max_fields=MAX_FORM_FIELDS)


def boundary_of(content_type: str) -> bytes:
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise Problem(400, "multipart/form-data needs a boundary parameter", reason="bad_multipart")
    return boundary


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    reader: MultipartReader

    def chunks(self) -> AsyncIterator[bytes]:
        return self.reader.part_data()

    async def text(self, limit: int = MAX_FIELD_SIZE) -> str:
        data = bytearray()
        async for chunk in self.chunks():
            data += chunk
            if len(data) > limit:
                raise Problem(413, f"the form field {self.name!r} is too long", reason="too_large")
        return data.decode("utf-8", errors="replace")


class MultipartReader:
    """Pull-style reader: ``async for part in reader.parts()``; read each part's chunks before the next."""

    def __init__(self, boundary: bytes, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._events: deque[tuple[str, Any]] = deque()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._header_bytes = self._header_count = 0
        self._finished = False
        self._in_part = False
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": lambda: self._events.append(("end", None)),
            "on_header_field": lambda data, start, end: self._header_data(self._header_field, data, start, end),
            "on_header_value": lambda data, start, end: self._header_data(self._header_value, data, start, end),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self._events.append(("headers_done", None)),
            "on_end": lambda: self._events.append(("finish", None)),
        })

    def _part_begin(self) -> None:
        self._header_bytes = self._header_count = 0
        self._events.append(("begin", None))

    def _header_data(self, buffer: bytearray, data: bytes, start: int, end: int) -> None:
        """Keep a piece of a header name or value; 400 once the part's headers outgrow ``MAX_PART_HEADER_BYTES``
        (raised inside the parser's ``write``, so it stops there, with at most one chunk more in hand)."""
        self._header_bytes += end - start
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise Problem(400, f"a part's headers are larger than {MAX_PART_HEADER_BYTES // 1024} KiB",
                          reason="bad_multipart")
        buffer.extend(data[start:end])

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        # Most calls cover a whole network chunk: pass it on as it is rather than copy it.
        whole = start == 0 and end == len(data) and type(data) is bytes
        self._events.append(("data", data if whole else bytes(data[start:end])))

    def _header_end(self) -> None:
        self._header_count += 1
        if self._header_count > MAX_PART_HEADERS:
            raise Problem(400, f"a part has more than {MAX_PART_HEADERS} headers", reason="bad_multipart")
        self._events.append(("header", (bytes(self._header_field).lower(), bytes(self._header_value))))
        self._header_field.clear()
        self._header_value.clear()

    async def _next_event(self) -> tuple[str, Any]:
        while not self._events:
            chunk = await anext(self._source, None)
            if chunk is None:
                raise Problem(400, "the multipart body ended before its closing boundary", reason="bad_multipart")
            try:
                self._parser.write(chunk)
            except MultipartParseError as error:
                raise Problem(400, f"malformed multipart body: {error}", reason="bad_multipart") from None
        return self._events.popleft()

    async def parts(self) -> AsyncIterator[Part]:
        """Each part in turn; more than ``MAX_FORM_FIELDS`` parts that are not files is 413."""
        fields = 0
        while True:
            if self._in_part:
                async for _ in self.part_data():
                    pass
            kind, _ = await self._next_event()
            if kind == "finish":
                return
            if kind == "begin":
                part = await self._read_headers()
                if not part.filename:  # a form field, or a browser's empty file control
                    fields += 1
                    check_field_count(fields)
                yield part

    async def _read_headers(self) -> Part:
        headers: dict[bytes, bytes] = {}
        while True:
            kind, value = await self._next_event()
            if kind == "headers_done":
                break
            if kind == "header":
                headers[value[0]] = value[1]
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        filename = options.get(b"filename")
        ctype = headers.get(b"content-type")
        self._in_part = True
        return Part(
            name=options.get(b"name", b"").decode("utf-8", errors="replace"),
            filename=None if filename is None else filename.decode("utf-8", errors="replace"),
            content_type=ctype.decode("latin-1") if ctype else None,
            reader=self,
        )

    async def part_data(self) -> AsyncIterator[bytes]:
        while self._in_part:
            kind, value = await self._next_event()
            if kind == "data":
                if value:
                    yield value
            elif kind == "end":
                self._in_part = False
