"""Filenames are display data: reduce whatever a client sends to a safe basename, or refuse it.

The storage key never comes from a filename, so this is about what people see: no path parts, no control
or bidirectional-override characters, no CR/LF for header injection, a sane length.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from urllib.parse import quote

from .errors import Problem

MAX_FILENAME_BYTES = 255
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}")


def safe_filename(raw: str | None) -> str:
    """The display name of an uploaded file; 400 when nothing usable is left."""
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(char for char in name if unicodedata.category(char)[0] not in ("C", "Z") or char == " ")
    name = name.strip(" .")
    if not name:
        raise Problem(400, "the file has no usable filename", reason="bad_filename")
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name.encode()) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    ext = f".{ext}" if dot and 0 < len(ext.encode()) <= 16 else ""
    stem = name[: len(name) - len(ext)] if ext else name
    while len((stem + ext).encode()) > MAX_FILENAME_BYTES:
        stem = stem[:-1]
    return stem + ext


def content_type_for(claimed: str | None, filename: str) -> str:
    """The client's type when well-formed, else a guess from the name, else application/octet-stream."""
    value = (claimed or "").split(";")[0].strip().lower()
    generic = ("application/octet-stream", "application/x-www-form-urlencoded", "multipart/form-data")
    if _CONTENT_TYPE.fullmatch(value) and value not in generic:
        return value
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """``attachment`` with an ASCII fallback and the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(char if 32 <= ord(char) < 127 and char not in '"\\%' else "_" for char in filename)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
