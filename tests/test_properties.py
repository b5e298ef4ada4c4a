"""Property tests (hypothesis): any filename becomes a safe display name; any multipart framing parses right."""

from __future__ import annotations

import asyncio
import os
import string

from hypothesis import HealthCheck, given, settings, strategies as st

from upload_service.errors import Problem
from upload_service.filenames import MAX_FILENAME_BYTES, content_disposition, safe_filename
from upload_service.multipart import MultipartReader


@given(st.text(max_size=2000))
@settings(max_examples=500)
def test_any_filename_is_refused_or_made_safe(raw):
    try:
        name = safe_filename(raw)
    except Problem as problem:
        assert problem.status == 400
        return
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name
    assert not any(ord(char) < 32 or ord(char) == 127 for char in name)
    assert "\u202e" not in name and "\u200f" not in name
    assert len(name.encode()) <= MAX_FILENAME_BYTES
    assert safe_filename(name) == name  # already safe names stay as they are
    header = content_disposition(name)
    assert "\r" not in header and "\n" not in header and header.isascii()


def _multipart(files: list[tuple[str, bytes]], boundary: str) -> bytes:
    body = b""
    for index, (name, data) in enumerate(files):
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{index}\"; filename=\"{name}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


async def _parse(body: bytes, boundary: str, cuts: list[int]) -> list[tuple[str, bytes]]:
    async def chunks():
        start = 0
        for cut in sorted(set(cuts)) + [len(body)]:
            if cut > start:
                yield body[start:cut]
                start = cut

    parsed = []
    async for part in MultipartReader(boundary.encode(), chunks()).parts():
        parsed.append((part.filename, b"".join([chunk async for chunk in part.chunks()])))
    return parsed


BOUNDARY_CHARS = string.ascii_letters + string.digits + "'()+_,-.:=?"


@given(
    files=st.lists(st.tuples(st.text(string.ascii_letters + string.digits + ".-_ ", min_size=1, max_size=20),
                             st.binary(max_size=3000)), min_size=1, max_size=4),
    boundary=st.text(BOUNDARY_CHARS, min_size=1, max_size=70),
    cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=30),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_multipart_parses_the_same_whatever_the_chunk_boundaries(files, boundary, cuts):
    body = _multipart(files, boundary)
    if any(f"--{boundary}".encode() in data for _, data in files):
        return  # a boundary that occurs inside the data is the client's error, not a parser case
    assert asyncio.run(_parse(body, boundary, cuts)) == files


def test_large_part_split_into_odd_chunks():
    data = os.urandom(300_000)
    body = _multipart([("big.bin", data)], "xyz")
    cuts = list(range(0, len(body), 4093))
    assert asyncio.run(_parse(body, "xyz", cuts)) == [("big.bin", data)]
