"""Logging: plain text or one JSON object per line (``LOG_FORMAT``), each record carrying the request id.

Every request to the service gets an id: the client's ``X-Request-Id`` when it is a sane token (so a proxy's
id follows the request through), a fresh one otherwise. It is returned as ``X-Request-Id``, put on every log
record written while the request is handled, and on one access record per request.
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint, Response, request

from .randomness import random_hex

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = ContextVar[str | None]("upload_service_request_id", default=None)
_STARTED = ContextVar[float]("upload_service_request_started", default=0.0)
_SANE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}
access_log = logging.getLogger("upload_service.access")


def current_request_id() -> str | None:
    """The id of the request being handled in this task, if any."""
    return _REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or None) to every record, whichever logger wrote it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id, any ``extra=`` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def configure_logging(level: str, log_format: str) -> None:
    """Route every logger (Hypercorn's too) through one stderr handler in the chosen format; idempotent."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "upload_service", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.upload_service = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)


def _request_id_from(header: str | None) -> str:
    if header and _SANE_ID.fullmatch(header):
        return header
    return random_hex(16)


def register_request_ids(bp: Blueprint) -> None:
    """Give each request of the service's blueprint an id, return it as a header, write one access record."""

    @bp.before_request
    async def begin() -> None:
        _REQUEST_ID.set(_request_id_from(request.headers.get(REQUEST_ID_HEADER)))
        _STARTED.set(time.perf_counter())

    @bp.after_request
    async def finish(response: Response) -> Response:
        request_id = _REQUEST_ID.get()
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        access_log.info("%s %s %s", request.method, request.path, response.status_code, extra={
            "method": request.method, "path": request.path, "status": response.status_code,
            "duration_ms": round((time.perf_counter() - _STARTED.get()) * 1000, 2)})
        return response
