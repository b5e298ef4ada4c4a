"""How files and errors look on the wire."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quart import Response, has_request_context, url_for
from werkzeug.exceptions import HTTPException

from .body import ClientDisconnected
from .errors import Problem, StorageBusy, StorageError, StorageFull, UploadRejected
from .files import StoredFile
from .identity import owner_key

if TYPE_CHECKING:
    from .service import UploadService

log = logging.getLogger("upload_service")
PROBLEM_JSON = "application/problem+json"


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a ``Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe_file(service: UploadService, file: StoredFile) -> dict[str, Any]:
    """The API's description of ``file``; works outside a request (the URL is built from ``url_prefix``)."""
    described = {
        "id": file.id,
        "filename": file.filename,
        "size": file.size,
        "content_type": file.content_type,
        "sha256": file.sha256,
        "created_at": iso(file.created_at),
        "temporary": file.temporary,
        "expires_at": iso(file.expires_at),
        "metadata": file.metadata,
        "url": (url_for(f"{service.name}.file_content", file_id=file.id) if has_request_context()
                else f"{service.url_prefix}/api/files/{file.id}/content"),
    }
    if file.temporary:
        described["token"] = service.tokens.issue(file.id, owner_key(file.owner))
    return described


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, content_type="application/json")


def problem_response(problem: Problem) -> Response:
    return Response(json.dumps(problem.body()), status=problem.status, headers=problem.headers,
                    content_type=PROBLEM_JSON)


def as_problem(error: BaseException) -> Problem:
    """Turn any error raised in a route into the problem the client should see."""
    if isinstance(error, Problem):
        return error
    if isinstance(error, UploadRejected):
        return Problem(error.status, error.detail, reason=error.reason)
    if isinstance(error, StorageFull):
        return Problem(507, "the storage is full; nothing of this upload was kept", reason="storage_full")
    if isinstance(error, StorageBusy):  # other work holds what the change needs: the client may retry
        return Problem(503, f"{error}; try again in {error.retry_after} s", reason="storage_busy",
                       headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, ClientDisconnected):
        return Problem(400, "the client disconnected before the body was complete", reason="disconnected")
    if isinstance(error, HTTPException):
        return Problem(error.code or 500, error.description or error.name, title=error.name)
    if isinstance(error, TimeoutError):  # STORAGE_TIMEOUT passed, or a storage client gave up waiting
        log.error("storage timeout", exc_info=error)
        return Problem(504, "the storage did not answer in time; nothing of this upload was kept",
                       reason="storage_timeout")
    if isinstance(error, (StorageError, OSError)):  # OSError: a backend's own I/O failed (disk, network)
        log.error("storage error", exc_info=error)
        return Problem(500, "the storage failed; nothing of this upload was kept", reason="storage_error")
    log.error("unhandled error", exc_info=error)
    return Problem(500, "an unexpected error happened; it was logged", reason="internal")


async def error_answer(service: UploadService, error: Exception) -> Response:
    """The service's answer to an error of one of its requests (its blueprint's error handler, and the raw-upload
    lane): problem details, counted in the rejections metric."""
    problem = as_problem(error)
    service.metrics.rejected(problem.reason, problem.status)
    return problem_response(problem)
