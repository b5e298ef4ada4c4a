"""A share's files as one zip, made while it is sent: no temporary file, memory bounded by a chunk or two.

stream-zip writes the archive (ZIP64 with data descriptors, so sizes and CRCs may follow each member's bytes
and no member has to be read twice). A zip of text only is deflated at level 6; any other is written with
deflate level 0 (stored blocks: a CRC and a copy), since what people share is mostly compressed already
(photos, video, PDFs, archives) and deflating it again would cap the download at the compressor's speed.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC
from stat import S_IFREG
from typing import TYPE_CHECKING, Any

from stream_zip import ZIP_64, async_stream_zip

if TYPE_CHECKING:
    from upload_service import StoredFile, UploadService

    from .records import Share

COMPRESSIBLE = ("text/", "application/json", "application/xml", "application/javascript", "image/svg+xml",
                "application/x-ndjson", "application/csv")


def zip_name(share: Share) -> str:
    return f"share-{share.created_at.astimezone(UTC):%Y-%m-%d}.zip"


def member_names(files: list[StoredFile]) -> list[str]:
    """The files' names, made unique the way a file manager would: ``a.txt``, ``a (2).txt``."""
    seen: set[str] = set()
    names = []
    for file in files:
        stem, dot, extension = file.filename.rpartition(".")
        if not dot or not stem:
            stem, dot, extension = file.filename, "", ""
        name, number = file.filename, 1
        while name.lower() in seen:
            number += 1
            name = f"{stem} ({number}){dot}{extension}"
        seen.add(name.lower())
        names.append(name)
    return names


def _compressor(files: list[StoredFile]) -> Any:
    level = 6 if all(file.content_type.startswith(COMPRESSIBLE) for file in files) else 0
    return lambda: zlib.compressobj(level=level, wbits=-zlib.MAX_WBITS)


async def _members(service: UploadService, files: list[StoredFile]) -> AsyncIterator[Any]:
    for name, file in zip(member_names(files), files, strict=True):
        yield (name, file.created_at, S_IFREG | 0o644, ZIP_64, service.storage.read(file.key))


def zipped(service: UploadService, files: list[StoredFile]) -> AsyncIterable[bytes]:
    return async_stream_zip(_members(service, files), chunk_size=256 * 1024, get_compressobj=_compressor(files))
