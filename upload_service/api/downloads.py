"""Serving a stored file's bytes: Range, ETag and If-None-Match, a safe type and disposition, HEAD; for the
owner's download route and for any plugin that hands a file to someone else (``service.download``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from quart import Response, request

from ..errors import ObjectNotFound, Problem
from ..serving import DOWNLOAD_POLICY, download_presentation

if TYPE_CHECKING:
    from ..files import StoredFile
    from ..service import UploadService


def _byte_range(file: StoredFile) -> tuple[int, int, int] | None:
    """(status, start, end) for the request's Range, or None to serve the whole file; 416 when unsatisfiable."""
    ranges = request.range
    if ranges is None or ranges.units != "bytes" or len(ranges.ranges) != 1:
        return None
    if_range = request.headers.get("If-Range")
    if if_range and if_range.strip() != f'"{file.sha256}"':
        return None
    bounds = ranges.range_for_length(file.size)
    if bounds is None:
        raise Problem(416, "the requested range is outside the file", reason="bad_range",
                      headers={"Content-Range": f"bytes */{file.size}"})
    return 206, bounds[0], bounds[1]


async def _primed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Open the stream before answering, so a file deleted meanwhile gives 404 instead of a cut response."""
    try:
        first = await anext(chunks, b"")
    except ObjectNotFound:
        raise Problem(404, "no such file", reason="not_found") from None

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return rest()


async def _head(service: UploadService, file: StoredFile, size: int) -> bytes:
    """The first bytes of a file that may be shown inline (a stored image type), to check what it really is."""
    try:
        return b"".join([chunk async for chunk in service.storage.read(file.key, 0, min(size, file.size))])
    except ObjectNotFound:
        raise Problem(404, "no such file", reason="not_found") from None


async def _download_url(service: UploadService, file: StoredFile) -> str | None:
    """A URL where the storage serves the bytes itself (``Storage.download_url``, optional), or None. The storage
    labels them as ``download_presentation`` decides, as this module does."""
    download_url = getattr(service.storage, "download_url", None)
    if download_url is None:
        return None
    return await download_url(file.key, file.filename, file.content_type)


async def serve_file(service: UploadService, file: StoredFile,
                     on_start: Callable[[], Awaitable[None]] | None = None) -> Response:
    """The response for a GET or HEAD of ``file``'s bytes.

    ``on_start`` is awaited just before a body that starts at byte 0 is sent (not for HEAD, 304, or a Range
    from the middle): the moment a download counts. What it raises is the answer instead.
    """
    content_type, disposition = await download_presentation(file.filename, file.content_type,
                                                            lambda size: _head(service, file, size))
    headers = {
        "ETag": f'"{file.sha256}"',
        "Accept-Ranges": "bytes",
        "Content-Disposition": disposition,
        "Content-Security-Policy": DOWNLOAD_POLICY,
        "Cache-Control": "private, no-cache",
    }
    if request.if_none_match.contains(file.sha256) or request.if_none_match.star_tag:
        return Response(b"", 304, headers)
    status, start, end = _byte_range(file) or (200, 0, file.size)
    starts_download = request.method == "GET" and start == 0
    redirect = await _download_url(service, file)
    if redirect is not None:
        if starts_download and on_start is not None:
            await on_start()
        return Response(b"", 302, {"Location": redirect, "Cache-Control": "no-store"})
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{file.size}"
    headers["Content-Length"] = str(end - start)
    if request.method == "HEAD":
        response = Response(b"", status, headers, content_type=content_type)
        response.headers["Content-Length"] = str(end - start)
        return response
    body = await _primed(service.storage.read(file.key, start, end))
    if starts_download and on_start is not None:
        await on_start()
    response = Response(body, status, headers, content_type=content_type)
    response.timeout = None  # a large download may take longer than RESPONSE_TIMEOUT
    return response
