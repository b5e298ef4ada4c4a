"""``Idempotency-Key`` (IETF httpapi draft "The Idempotency-Key HTTP Header Field"): a request that creates or
changes something, sent again with the same key by the same owner, is done once.

The scope of a key is its owner, or what the route's ``key_scope`` names for callers without an account (a
file-request link for its visitors): ``<owner>`` below is then ``scope-<hash of that name>``, which no owner's
key (32 hex digits) can be, so a key under one scope never meets the same key under another.

Each key has two records in the storage, where every instance finds them, each the metadata of an empty object
kept for ``IDEMPOTENCY_TTL``: before a request does anything, its mark ``idempotency/<owner>/<sha256 of the key>``
says that an attempt started; once it has its answer, and before the answer goes out, the answer (status, the
headers the route set, body) is kept beside it as ``...-answer``. While a request works, it holds the lock
``idempotency:<owner>-<sha256 of the key>`` of the service's locker (``LOCKER``): a repeat meanwhile gets 409 at
once. A repeat after the first finished gets the kept answer with ``Idempotent-Replayed: true``, and nothing
runs again.

Neither record waits for a flush of its own (``upload_service.storage.record_writer``): the mark must be durable
before any effect of the work is, and on local disk the work's own commit makes it so; an answer a crash loses
only makes the retry take the work over, as below. So a key costs a small upload two small writes, not two
journal commits.

An instance can die between doing the work and keeping its answer. Its lock goes with it (the kernel drops a
file lock, Redis lets a lease expire), and the retry finds the mark of a started attempt: it runs as an
``attempts.Attempt`` that is ``retrying``. New files of a keyed request have ids derived from the key, so the
retry commits to the ids the dead attempt used and adopts the files it finds there instead of storing them
twice; a persist whose files are all persistent already, and a delete whose file is gone, answer as the first
would have.

What is kept: every answer below 500 except those that say "try again" (408, 423, 425, 429): the draft asks a
decided error to be replayed. A 5xx, a cancelled request or a client gone midway keeps no answer, so a retry
does the work; its mark stays, so the retry also finds whatever that attempt did before it failed (a batch
undoes its commits when it fails, but not when the failure comes after them, as when the usage ledger cannot
be written).

The request's fingerprint, compared on every repeat (another request under the same key: 422): the method, the
path and query, the media type, the headers that shape an upload (tus ``Upload-*``, digests), the declared length,
and the sha256 of the body's first ``FINGERPRINT_BYTES``, read ahead and left for the route. A multipart body's
boundary is left out (clients pick a new one for every request, the retry of one upload included), and with it
its length. Not the whole body: a 5 GiB retry would be read whole only to be told what it was told before; two
different bodies of one length that share their first 64 KiB under one key are taken for the same request.

Not ``Accept`` either: most answers are the same whatever it says, and a client's retry of an upload with another
``Accept`` (a browser's resend, a script's retry through another library) is still the same upload. An answer that
does depend on a request header names it in ``Vary``, as HTTP asks (a visitor's form upload to a file request:
an HTML page or JSON by ``Accept``); its kept answer notes the request's values of those headers, and is replayed
only to a repeat with the same values (compared without spaces or case): another is 422, since the answer kept is
not one it could have got. A retry after an attempt died runs the view itself, so it answers as it asks.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar, cast

from quart import Request, Response, make_response, request

from .aio import complete
from .attempts import Attempt, enter_attempt, leave_attempt
from .body import peek_body
from .errors import ObjectExists, Problem, UploadRejected
from .locking import LockBusy
from .responses import as_problem, problem_response
from .storage import RecordFlush, record_writer

if TYPE_CHECKING:
    from .service import UploadService

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
KeyScope = Callable[..., Awaitable[str | None]]  # a route's key_scope: its arguments -> the scope, or None


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
    """The records of one service's keys: an attempt's mark, then its kept answer; looked up, replayed, swept."""

    def __init__(self, service: UploadService) -> None:
        self.service = service

    @staticmethod
    def names(owner: str, key: str) -> tuple[str, str]:
        """The storage key of the key's record, and the lock name of the request at work."""
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{AREA}/{owner}/{digest}", f"{owner}-{digest}"

    async def load(self, record_key: str) -> dict[str, Any] | None:
        """The key's answer if it has one, else the mark of an attempt at work or dead, until they expire.

        The mark is looked for first: without one there is no answer (it is written before the answer, and made
        durable no later; both expire at once). A new key is not looked up at all: its ``mark`` succeeds."""
        mark = await self._unexpired(record_key)
        return None if mark is None else await self._unexpired(_answer_key(record_key)) or mark

    async def _unexpired(self, key: str) -> dict[str, Any] | None:
        stored = await self.service.storage.stat(key)
        if stored is None or stored.metadata.get("expires_at", 0) <= time.time():
            return None
        return stored.metadata

    async def mark(self, record_key: str, fingerprint: str, request: Request) -> dict[str, Any] | None:
        """Note, before any work, that an attempt starts: a retry after it died then knows to look for its work.
        None when an earlier attempt's mark is there (one create-if-absent: a new key costs no look).

        Durable before any effect of the work is (``ordered``), not necessarily at once: on local disk the work's
        own commit makes it durable too, which spares a journal commit per request."""
        now = time.time()
        record = {"state": "started", "fingerprint": fingerprint, "method": request.method, "path": request.path,
                  "started": now, "expires_at": now + self.service.settings.idempotency_ttl}
        try:
            await self._create(record_key, record, "ordered")
        except ObjectExists:
            if await self._unexpired(record_key) is not None:
                return None
            await self.service.storage.delete(record_key)  # expired (we hold the lock: nothing fresh comes)
            await self._create(record_key, record, "ordered")
        return record

    async def keep(self, record_key: str, record: dict[str, Any], request: Request, response: Response) -> None:
        """Keep the attempt's answer beside its mark, to be replayed for ``IDEMPOTENCY_TTL``. A new object, never
        a change of the mark: a change waits for a dead attempt's unfinished change of the same object (S3's
        journal), a new object waits for nothing. Not flushed on its own (``lazy``): an answer a crash loses makes
        the retry find the mark and take the work over, as when the instance died before keeping it. It expires
        with the mark."""
        body = await response.get_data(as_text=False)
        answered = {**record, "state": "answered", "status": response.status_code,
                    "headers": [[name, value] for name, value in response.headers.items()
                                if name.lower() not in UNKEPT_HEADERS],
                    "varied": varied(request, response),
                    "body": base64.b64encode(body).decode()}
        try:
            await self._create(_answer_key(record_key), answered, "lazy")
        except ObjectExists:  # an expired answer, or the one a dead attempt kept as it died (the same work)
            if await self._unexpired(_answer_key(record_key)) is None:
                await self.service.storage.delete(_answer_key(record_key))
                await self._create(_answer_key(record_key), answered, "lazy")

    async def _create(self, record_key: str, record: dict[str, Any], flush: RecordFlush) -> None:
        async with record_writer(self.service.storage, flush) as writer:
            await writer.commit(record_key, record)

    async def sweep(self) -> int:
        """Remove the records whose keys expired (the cleanup sweep)."""
        removed, after, now = 0, None, time.time()
        while True:
            page = await self.service.storage.list(f"{AREA}/", start_after=after, limit=LIST_PAGE)
            for stored in page:
                if stored.metadata.get("expires_at", 0) <= now and await self.service.storage.delete(stored.key):
                    removed += 1
            if len(page) < LIST_PAGE:
                return removed
            after = page[-1].key


def _answer_key(record_key: str) -> str:
    return f"{record_key}-answer"


def varied(request: Request, response: Response) -> dict[str, str]:
    """This request's values of the headers the answer depends on (its ``Vary``), which a replay must match."""
    names = {name.strip().lower() for value in response.headers.getlist("Vary") for name in value.split(",")}
    return {name: _normal(request.headers.get(name, "")) for name in sorted(names - {"", "*"})}


def differs(request: Request, record: dict[str, Any]) -> list[str]:
    """The headers a kept answer varies on whose values in this request are other than in the first."""
    return [name for name, value in record.get("varied", {}).items() if _normal(request.headers.get(name, "")) != value]


def _normal(value: str) -> str:
    return "".join(value.split()).lower()


def answered(record: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    return record is not None and record.get("state") == "answered"


def replay(record: dict[str, Any]) -> Response:
    response = Response(base64.b64decode(record["body"]), status=record["status"], headers=record["headers"])
    if not any(name.lower() == "content-type" for name, _ in record["headers"]):
        del response.headers["Content-Type"]
    response.headers[REPLAYED] = "true"
    return response


def keepable(status: int) -> bool:
    return status < 500 and status not in RETRYABLE


async def fingerprint(service: UploadService, request: Request) -> str:
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


def _mismatch(what: str = "method, path, headers or body differ") -> Problem:
    return Problem(422, f"this {HEADER} was used for another request ({what}); use a new key for a new request",
                   reason="idempotency_key_reused")


def _in_progress() -> Problem:
    return Problem(409, f"a request with this {HEADER} is still in progress; retry once it has finished",
                   reason="idempotency_in_progress", headers={"Retry-After": "1"})


def scoped(scope: str) -> str:
    """The owner segment of the records of keys under ``scope`` (a route's ``key_scope``): never an owner key."""
    return f"scope-{hashlib.sha256(scope.encode()).hexdigest()[:32]}"


async def _owner(service: UploadService, request: Request,
                 key_scope: Callable[[], Awaitable[str | None]] | None) -> str | None:
    """Whose key it is: the route's scope (None: this request takes no key), else the signed-in caller's."""
    if key_scope is not None:
        scope = await key_scope()
        return None if scope is None else scoped(scope)
    # CSRF stays the route's to check (a plain form carries its token in a field): a replay changes nothing, and
    # a cross-site page can neither set this header nor read an answer
    return (await service.require_identity(request, check_csrf=False)).owner_key


async def answer_once(service: UploadService, request: Request, owner: str, key: str,
                      view: Callable[[], Awaitable[Any]]) -> Response:
    """Run ``view`` once per (owner, key): replay a kept answer, 409 while another runs, 422 for another request.

    Most keys are new (behind the shipped nginx config every request has one of its own), so the key's lock is
    taken and its mark made at once, with no look first: the mark is a create that fails if an attempt made it
    before, and only then is the key looked up. A repeat thus also takes the lock: while another repeat of the
    same key holds it, it gets 409 and retries."""
    keys: IdempotencyKeys = service.idempotency_keys
    record_key, lock_name = keys.names(owner, key)
    try:
        async with service.locker.hold("idempotency", lock_name, take_over=False) as lock:
            lock.forget()  # one lock per key: its traces (a lock file) go when it is let go
            taken = await fingerprint(service, request)
            record = await keys.mark(record_key, taken, request)  # nothing else can mark it: we hold its lock
            retrying = record is None  # an earlier attempt's mark: it answered, failed or died (its work done in part)
            if record is None:
                if answered(record := await keys.load(record_key)):
                    return await _replayed(service, request, record, taken)
                if record is None:  # expired this very moment
                    raise _in_progress()
                if record.get("fingerprint") != taken:
                    raise _mismatch()
                service.metrics.counter("idempotent_resumed", "Idempotency-Key requests that found the mark of an "
                                        "earlier attempt without an answer (it died or failed)").inc()
            seed = hmac.new(service.secret_key.encode(), record_key.encode(), hashlib.sha256).digest()
            return await _run(keys, request, record_key, record, Attempt(seed, record["started"], retrying), view)
    except LockBusy:
        raise _in_progress() from None


async def _replayed(service: UploadService, request: Request, record: dict[str, Any], taken: str) -> Response:
    if record.get("fingerprint") != taken:
        raise _mismatch()
    if names := differs(request, record):
        raise _mismatch(f"its answer depends on {', '.join(names)}, which differs")
    service.metrics.counter("idempotent_replays", "requests answered with a kept Idempotency-Key answer").inc()
    return replay(record)


async def _run(keys: IdempotencyKeys, request: Request, record_key: str, record: dict[str, Any], attempt: Attempt,
               view: Callable[[], Awaitable[Any]]) -> Response:
    entered = enter_attempt(attempt)
    try:
        result = await view()
        # a view's own Response needs no app context (the raw-upload lane has none); anything else Quart makes one of
        response = result if isinstance(result, Response) else cast(Response, await make_response(result))
    except BaseException as error:
        problem = as_problem(error) if isinstance(error, Problem | UploadRejected) else None  # a decided refusal
        if problem is not None and keepable(problem.status):
            await complete(keys.keep(record_key, record, request, problem_response(problem)))
        raise  # a 5xx or a client gone: the mark stays, and the retry looks for what this attempt left done
    finally:
        leave_attempt(entered)
    if keepable(response.status_code):
        await keys.keep(record_key, record, request, response)
    return response


async def keyed(service: UploadService, request: Request, view: Callable[[], Awaitable[Any]],
                key_scope: Callable[[], Awaitable[str | None]] | None = None) -> Any:
    """``view()`` done once per ``Idempotency-Key`` of ``request`` (as it is without the header): the work of
    ``idempotent`` routes, and of the raw-upload lane, which answers without Quart's request context."""
    header = request.headers.get(HEADER)
    if header is None:
        return await view()
    owner = await _owner(service, request, key_scope)
    if owner is None:
        return await view()
    return await answer_once(service, request, owner, parse_key(header), view)


def idempotent(service: UploadService, view: V, key_scope: KeyScope | None = None) -> V:
    """``view`` with ``Idempotency-Key`` support; without the header it runs as it is. ``key_scope``, called
    with the view's arguments, names the keys' scope where the caller need not be signed in (see the facade)."""

    @functools.wraps(view)
    async def once(*args: Any, **kwargs: Any) -> Any:
        scope = None if key_scope is None else functools.partial(key_scope, *args, **kwargs)
        return await keyed(service, request, functools.partial(view, *args, **kwargs), scope)

    once.idempotent = True  # type: ignore[attr-defined]  # the OpenAPI document adds the header and 409/422
    return once  # type: ignore[return-value]
