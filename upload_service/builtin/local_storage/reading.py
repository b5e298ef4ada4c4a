"""Streaming a stretch of a file back: an object's bytes, or an upload's so far."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

import aiofiles

from upload_service.storage import ObjectNotFound

from .layout import DATA

READ_CHUNK = 256 * 1024


async def read_range(path: Path, name: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
    """Bytes ``start`` up to ``end`` (exclusive; None = to the end) of ``path``; ``ObjectNotFound(name)`` if the
    file is not there. A reader that has opened the file reads on intact after the file is deleted."""
    try:
        try:
            handle = await aiofiles.open(path, "rb")
        except IsADirectoryError:  # an object of the older layout: a folder holding its bytes in ``data``
            handle = await aiofiles.open(path / DATA, "rb")
    except (FileNotFoundError, NotADirectoryError) as error:
        raise ObjectNotFound(name) from error
    try:
        if start:
            await handle.seek(start)
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            chunk = await handle.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        await handle.close()
