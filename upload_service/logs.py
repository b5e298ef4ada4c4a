"""Logging: plain text or one JSON object per line (``LOG_FORMAT``), each record carrying the request id.

Every request to the service gets an id: the client's ``X-Request-Id`` when it is a sane token (so a proxy's
id follows the request through), a fresh one otherwise. It is returned as ``X-Request-Id``, put on every log
record written while the request is handled, and on one access record per request.

No value a client sends can write a line of its own into the log (a path holding ``%0A``, a provider's error
text, a filename): the formatters escape every control character (a line break becomes ``\n``, ESC ``\x1b``;
Unicode line separators and bidi overrides too) in every value of every record, whoever logged it, so that no
call site has to remember it. A traceback keeps its line breaks: in the text format each of its lines is
indented, so none can pass for a record; in JSON it is one string value, as each record is one line.
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

from .lean_path import ignores_raw_uploads
from .randomness import random_hex

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = ContextVar[str | None]("upload_service_request_id", default=None)
_STARTED = ContextVar[float]("upload_service_request_started", default=0.0)
_SANE_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}
access_log = logging.getLogger("upload_service.access")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": r"\n", "\r": r"\r", "\t": r"\t"}
TRACEBACK_INDENT = "    "


def escape_controls(text: str) -> str:
    """``text`` on one line: each control character written as its Python escape (``\\n``, ``\\x1b``)."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def _escape_lines(text: str) -> str:
    """A multi-line text (a traceback) with its line breaks kept and every other control character escaped."""
    return "\n".join(escape_controls(line) for line in text.split("\n"))


def _escape_value(value: Any) -> Any:
    """A JSON record's value with every string in it escaped (other types are left to ``json.dumps``)."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, list | tuple):
        return [_escape_value(item) for item in value]
    if isinstance(value, dict):
        return {escape_controls(str(key)): _escape_value(item) for key, item in value.items()}
    return value


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
        entry = _escape_value(entry)
        if record.exc_info:
            entry["exception"] = _escape_lines(self.formatException(record.exc_info))
        return json.dumps(entry, default=lambda value: escape_controls(str(value)))


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``: the record on one line with its values escaped, then any traceback, each line indented."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """``logging.Formatter.format`` with the escaping; it never takes the ``exc_text`` that another handler's
        formatter may have cached on the record, unescaped."""
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = escape_controls(self.formatMessage(record))
        if record.exc_info:
            text += "\n" + _indented(self.formatException(record.exc_info))
        if record.stack_info:
            text += "\n" + _indented(self.formatStack(record.stack_info))
        return text


def _indented(text: str) -> str:
    return "\n".join(TRACEBACK_INDENT + line for line in _escape_lines(text).split("\n"))


def configure_logging(level: str, log_format: str) -> None:
    """Route every logger (Hypercorn's too) through one stderr handler in the chosen format; idempotent."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "upload_service", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.upload_service = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def _request_id_from(header: str | None) -> str:
    if header and _SANE_ID.fullmatch(header):
        return header
    return random_hex(16)


REDACTED = "[redacted]"


def logged_path(secret_variables: set[str]) -> str:
    """The request's path for the access log, with the values of secret URL variables (a share link's token:
    whoever reads the log could use it) replaced by ``[redacted]``."""
    path = request.path
    for name, value in (request.view_args or {}).items():
        if name in secret_variables and isinstance(value, str) and value:
            path = path.replace(value, REDACTED)
    return path


def register_request_ids(bp: Blueprint, secret_variables: set[str] | None = None) -> None:
    """Give each request of the service's blueprint an id, return it as a header, write one access record
    (``secret_variables``: URL variables whose values never reach the log)."""
    secrets = secret_variables if secret_variables is not None else set()

    @bp.before_request
    @ignores_raw_uploads  # the raw-upload lane calls the same two functions
    async def begin() -> None:
        begin_request(request.headers.get(REQUEST_ID_HEADER))

    @bp.after_request
    @ignores_raw_uploads
    async def finish(response: Response) -> Response:
        return end_request(response, request.method, logged_path(secrets))


def begin_request(request_id_header: str | None) -> None:
    """Before a request of the service: its id (the client's, if sane) and its start, for the access record."""
    _REQUEST_ID.set(_request_id_from(request_id_header))
    _STARTED.set(time.perf_counter())


def end_request(response: Response, method: str, path: str) -> Response:
    """After it: the id as a header, and one access record."""
    request_id = _REQUEST_ID.get()
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id
    access_log.info("%s %s %s", method, path, response.status_code, extra={
        "method": method, "path": path, "status": response.status_code,
        "duration_ms": round((time.perf_counter() - _STARTED.get()) * 1000, 2)})
    return response
