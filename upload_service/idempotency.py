"""``Idempotency-Key`` (IETF httpapi draft "The Idempotency-Key HTTP Header Field"): a request that creates or
changes something, sent again with the same key by the same owner, is done once.

The first answer is kept in the storage, so every instance finds it, as the metadata of an empty object
``idempotency/<owner>/<sha256 of the key>``, for ``IDEMPOTENCY_TTL``. While a request works, it holds the lock
``idempotency:<owner>-<sha256 of the key>`` of the service's locker (``LOCKER``): a repeat meanwhile gets 409 at
once, and the lock of a holder that died goes with it (the kernel drops a file lock, Redis lets a lease expire),
so a retry after a crash is not refused for longer than that. A repeat after the first finished gets the kept
answer (status, the headers the route set, body) with ``Idempotent-Replayed: true``, and nothing runs again.

What is kept: every answer below 500 except those that say "try again" (408, 423, 425, 429): the draft asks a
decided error to be replayed. A 5xx, a cancelled request or a client gone midway keeps nothing, so a retry does
the work. A crash between a route's commit and the write of its answer (a few milliseconds) is the one window in
which a retry does the work a second time.

The request's fingerprint, compared on every repeat (another request under the same key: 422): the method, the
path and query, the media type, the headers that shape an upload (tus ``Upload-*``, digests), the declared length,
and the sha256 of the body's first ``FINGERPRINT_BYTES``, read ahead and left for the route. A multipart body's
boundary is left out (clients pick a new one for every request, the retry of one upload included), and with it
its length. Not the whole body: a 5 GiB retry would be read whole only to be told what it was told before; two
different bodies of one length that share their first 64 KiB under one key are taken for the same request.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from quart import Response, make_response, request

from .body import ClientDisconnected, peek_body
from .errors import ObjectExists, Problem
from .locking import LockBusy
from .responses import as_problem, problem_response

if TYPE_CHECKING:
    from .service import UploadService

log = logging.getLogger("upload_service.idempotency")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
AREA = "idempotency"
FINGERPRINT_BYTES = 64 * 1024
FINGERPRINT_HEADERS = ("Upload-Length", "Upload-Defer-Length", "Upload-Metadata", "Upload-Concat",
                       "Upload-Checksum", "Content-Digest", "Digest", "Content-MD5", "Repr-Digest")
RETRYABLE = frozenset({408, 423, 425, 429})  # "try again": never kept
UNKEPT_HEADERS = frozenset({"content-length", "date", "set-cookie", "server"})
LIST_PAGE = 500
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:/=]+")  # an sf-token, and what curl users type (base64 too)
_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')  # an sf-string: printable ASCII, \" \\

V = TypeVar("V", bound=Callable[..., Awaitable[Any]])


def parse_key(value: str) -> str:
    """The key of an ``Idempotency-Key`` header: a structured-field string (``"8e03978e-..."``) or, for curl
    users, a bare token; 400 when it is neither, empty, or longer than ``MAX_KEY_LENGTH``."""
    value = value.strip(" \t")
    quoted = _STRING.fullmatch(value)
    key = re.sub(r"\\(.)", r"\1", quoted.group(1)) if quoted else value if _TOKEN.fullmatch(value) else None
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Problem(400, f'{HEADER} must be a quoted string ("...") or a token of 1 to {MAX_KEY_LENGTH} '
                           "printable ASCII characters", reason="bad_idempotency_key", max_length=MAX_KEY_LENGTH)
    return key


class IdempotencyKeys:
    """The kept answers of one service: looked up, written, replayed and swept."""

    def __init__(self, service: UploadService) -> None:
        self.service = service

    @staticmethod
    def names(owner: str, key: str) -> tuple[str, str]:
        """The storage key of the kept answer, and the lock name of the request at work."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{AREA}/{owner}/{digest}", f"{owner}-{digest}"

    async def kept(self, record_key: str) -> dict[str, Any] | None:
        """The answer kept under ``record_key`` while it has not expired."""
        stored = await self.service.storage.stat(record_key)
        if stored is None or stored.metadata.get("expires_at", 0) <= time.time():
            return None
        return stored.metadata

    async def keep(self, record_key: str, fingerprint: str, response: Response) -> None:
        """Write the answer (create-if-absent: a stale one of an expired key is removed first)."""
        body = await response.get_data(as_text=False)
        now = time.time()
        record = {"fingerprint": fingerprint, "method": request.method, "path": request.path,
                  "status": response.status_code, "created_at": now,
                  "expires_at": now + self.service.settings.idempotency_ttl,
                  "headers": [[name, value] for name, value in response.headers.items()
                              if name.lower() not in UNKEPT_HEADERS],
                  "body": base64.b64encode(body).decode()}
        try:
            await self._create(record_key, record)
        except ObjectExists:  # an expired answer (we hold the lock: nothing fresh can be there) or another's
            if await self.kept(record_key) is not None:  # a locker that does not span machines (LOCKER=file)
                log.warning("an answer for one idempotency key was kept twice: use LOCKER=redis across machines")
                return
            await self.service.storage.delete(record_key)
            await self._create(record_key, record)

    async def _create(self, record_key: str, record: dict[str, Any]) -> None:
        async with self.service.storage.writer() as writer:
            await writer.commit(record_key, record)

    async def sweep(self) -> int:
        """Remove the answers whose keys expired (the cleanup sweep)."""
        removed, after, now = 0, None, time.time()
        while True:
            page = await self.service.storage.list(f"{AREA}/", start_after=after, limit=LIST_PAGE)
            for stored in page:
                if stored.metadata.get("expires_at", 0) <= now and await self.service.storage.delete(stored.key):
                    removed += 1
            if len(page) < LIST_PAGE:
                return removed
            after = page[-1].key


def replay(record: dict[str, Any]) -> Response:
    response = Response(base64.b64decode(record["body"]), status=record["status"], headers=record["headers"])
    if not any(name.lower() == "content-type" for name, _ in record["headers"]):
        del response.headers["Content-Type"]
    response.headers[REPLAYED] = "true"
    return response


def keepable(status: int) -> bool:
    return status < 500 and status not in RETRYABLE


async def fingerprint(service: UploadService) -> str:
    """What makes a repeat the same request (see the module's docstring)."""
    media = (request.mimetype or "").lower()
    parts = [request.method, request.path, request.query_string.decode("latin-1"), media,
             *(f"{name}:{request.headers.get(name, '')}" for name in FINGERPRINT_HEADERS)]
    head = await peek_body(request, FINGERPRINT_BYTES, service.settings.upload_idle_timeout) or b""
    boundary = request.mimetype_params.get("boundary", "").encode() if media.startswith("multipart/") else b""
    if boundary:
        if len(head) == FINGERPRINT_BYTES:  # a boundary cut at the end would differ from a retry's
            head = head[:-(len(boundary) + 8)]
        head = head.replace(boundary, b"")
    else:
        parts.append(str(request.content_length))
    parts.append(hashlib.sha256(head).hexdigest())
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _mismatch() -> Problem:
    return Problem(422, f"this {HEADER} was used for another request (method, path, headers or body differ); "
                        "use a new key for a new request", reason="idempotency_key_reused")


def _in_progress() -> Problem:
    return Problem(409, f"a request with this {HEADER} is still in progress; retry once it has finished",
                   reason="idempotency_in_progress", headers={"Retry-After": "1"})


async def answer_once(service: UploadService, key: str, view: Callable[[], Awaitable[Any]]) -> Response:
    """Run ``view`` once per (owner, key): replay a kept answer, 409 while another runs, 422 for another request."""
    # CSRF stays the route's to check (a plain form carries its token in a field): a replay changes nothing, and
    # a cross-site page can neither set this header nor read an answer
    identity = await service.require_identity(request, check_csrf=False)
    keys: IdempotencyKeys = service.idempotency_keys
    record_key, lock_name = keys.names(identity.owner_key, key)
    if (record := await keys.kept(record_key)) is not None:  # no lock needed: an answer never changes
        return await _replayed(service, record)
    try:
        async with service.locker.hold("idempotency", lock_name, take_over=False) as lock:
            lock.forget()  # one lock per key: its traces (a lock file) go when it is let go
            if (record := await keys.kept(record_key)) is not None:
                return await _replayed(service, record)
            return await _run(service, keys, record_key, view)
    except LockBusy:
        raise _in_progress() from None


async def _replayed(service: UploadService, record: dict[str, Any]) -> Response:
    if record.get("fingerprint") != await fingerprint(service):
        raise _mismatch()
    service.metrics.counter("idempotent_replays", "requests answered with a kept Idempotency-Key answer").inc()
    return replay(record)


async def _run(service: UploadService, keys: IdempotencyKeys, record_key: str,
               view: Callable[[], Awaitable[Any]]) -> Response:
    taken = await fingerprint(service)
    try:
        response = cast(Response, await make_response(await view()))
    except Exception as error:
        problem = as_problem(error)
        if keepable(problem.status) and not isinstance(error, ClientDisconnected):  # nobody to answer: a retry's turn
            await keys.keep(record_key, taken, problem_response(problem))
        raise
    if keepable(response.status_code):
        await keys.keep(record_key, taken, response)
    return response


def idempotent(service: UploadService, view: V) -> V:
    """``view`` with ``Idempotency-Key`` support; without the header it runs as it is."""

    @functools.wraps(view)
    async def once(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get(HEADER)
        if header is None:
            return await view(*args, **kwargs)
        return await answer_once(service, parse_key(header), lambda: view(*args, **kwargs))

    once.idempotent = True  # type: ignore[attr-defined]  # the OpenAPI document adds the header and 409/422
    return once  # type: ignore[return-value]
