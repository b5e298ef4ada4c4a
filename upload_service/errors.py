"""Exceptions of the public API and the problem-details error every route answers with."""

from __future__ import annotations

from typing import Any


class StartupError(Exception):
    """Raised by a plugin's ``startup`` hook to refuse to start; the message is shown to the operator."""


class UploadRejected(Exception):
    """Raised by ``validate_upload`` or ``process_upload`` to refuse an upload.

    The client gets ``status`` (422 unless said otherwise) and ``detail`` as problem details,
    and nothing of the upload is kept.
    """

    def __init__(self, detail: str, status: int = 422, *, reason: str = "rejected") -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.reason = reason


class StorageError(Exception):
    """A storage backend failed; the core answers 500 unless a subclass says better."""


class StorageFull(StorageError):
    """The storage has no room left: the client gets 507 and the partial object is removed."""


class StorageBusy(StorageError):
    """What the change needs is held by other work: live, or left by a dead process whose lease has not run out.

    The client gets 503 with ``Retry-After: retry_after`` (seconds), by when a dead holder's work can be taken over.
    """

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


class ObjectNotFound(StorageError, KeyError):
    """No object under this key."""


class ObjectExists(StorageError):
    """An object already stands under the destination key."""


PROBLEM_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    507: "Insufficient Storage",
}


class Problem(Exception):
    """An RFC 9457 problem: raise it anywhere in a request and the client gets problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type: str = "about:blank",
        headers: dict[str, str] | None = None,
        reason: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or PROBLEM_TITLES.get(status, "Error")
        self.type = type
        self.headers = headers or {}
        self.reason = reason or self.title.lower().replace(" ", "_")
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail, **self.extra}
