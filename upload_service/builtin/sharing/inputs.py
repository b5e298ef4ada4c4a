"""The owner's JSON for a new share link or file request, checked field by field into clear 400 problems."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from upload_service import Problem, parse_duration, parse_size

MAX_EXPIRY = 366 * 24 * 3600.0  # a year and a day: links are for sending files, not for publishing them
MAX_NOTE = 2000  # characters of a share's note or a request's title
MAX_PASSWORD = 1024


def bad(field: str, detail: str) -> Problem:
    return Problem(400, f"{field}: {detail}", reason="bad_json", field=field)


def json_object(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Problem(400, "expected a JSON object", reason="bad_json")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad(unknown[0], f"not a known field (known: {', '.join(sorted(allowed))})")
    return body


def expiry(body: dict[str, Any], created: datetime) -> datetime | None:
    """``expires_in``: ``"7d"``, seconds, or null for a link that never expires."""
    raw = body.get("expires_in")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise bad("expires_in", 'seconds, a duration such as "7d", or null')
    try:
        seconds = parse_duration(raw)
    except (ValueError, OverflowError):
        raise bad("expires_in", 'seconds, a duration such as "7d", or null') from None
    if not 0 < seconds <= MAX_EXPIRY:
        raise bad("expires_in", f"from 1 second to {int(MAX_EXPIRY // 86400)} days")
    return created + timedelta(seconds=seconds)


def password(body: dict[str, Any]) -> str | None:
    raw = body.get("password")
    if raw is None:
        return None
    if not isinstance(raw, str) or not 1 <= len(raw) <= MAX_PASSWORD:
        raise bad("password", f"a string of 1 to {MAX_PASSWORD} characters, or null")
    return raw


def positive_count(body: dict[str, Any], field: str) -> int | None:
    raw = body.get(field)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 1_000_000_000:
        raise bad(field, "a whole number of at least 1, or null")
    return raw


def size(body: dict[str, Any], field: str, ceiling: int) -> int | None:
    raw = body.get(field)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise bad(field, 'bytes, or a size such as "100MiB", or null')
    try:
        value = parse_size(raw)
    except (ValueError, OverflowError):
        raise bad(field, 'bytes, or a size such as "100MiB", or null') from None
    if not 1 <= value <= ceiling:
        raise bad(field, f"from 1 byte to MAX_UPLOAD_SIZE ({ceiling} bytes)")
    return value


def text(body: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    raw = body.get(field)
    if raw is None and not required:
        return None
    if not isinstance(raw, str) or len(raw) > MAX_NOTE or (required and not raw.strip()):
        raise bad(field, f"a{' non-empty' if required else ''} string of at most {MAX_NOTE} characters")
    return raw.strip() if required else raw


def file_ids(body: dict[str, Any], limit: int) -> list[str]:
    raw = body.get("files")
    if not isinstance(raw, list) or not raw or not all(isinstance(item, str) for item in raw):
        raise bad("files", "a non-empty list of file ids")
    if len(raw) > limit:
        raise Problem(413, f"files: a share holds at most {limit} files (MAX_FILES_PER_REQUEST)",
                      reason="too_many_files", max_files=limit)
    if len(set(raw)) != len(raw):
        raise bad("files", "a file is named more than once")
    return list(raw)
