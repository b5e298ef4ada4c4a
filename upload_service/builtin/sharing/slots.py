"""A file request's ``max_files``: each file takes a slot before its bytes are read, under the request's lock,
so racing uploads on any instance cannot pass it; a file refused or failed gives its slot back.

A keyed upload (``Idempotency-Key``) records the slots it took in the record's ``claims``, under its attempt's
id (``service.keyed_attempt()``). When its instance dies after taking them (after committing the file, or
midway), the retry with the same key finds them: its files take those slots again instead of new ones (the link
counts each file once), and the link does not refuse it for being full or expired, since it admitted the upload
before (the retry answers with the file the dead attempt committed, or stores it). A claim lasts as long as the
key (``IDEMPOTENCY_TTL``), and a link keeps the newest ``MAX_CLAIMS``: the retry of an attempt whose claim went
takes a new slot, as an upload without a key does.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from .records import FileRequest
from .visits import not_found, refuse_if_closed

if TYPE_CHECKING:
    from upload_service import KeyedAttempt, UploadService

    from .store import LinkStore
    from .visits import Visits

MAX_CLAIMS = 40  # about 2 KiB of record: a link's record stays small enough for the local storage's xattr


def claimed(record: FileRequest, attempt: KeyedAttempt | None, at: float | None = None) -> int:
    """How many slots an earlier attempt of ``attempt``'s key took on the link (0 for a request without a key)."""
    claim = record.claims.get(attempt.id) if attempt is not None else None
    return claim[0] if claim is not None and claim[1] > (time.time() if at is None else at) else 0


async def open_for_upload(visits: Visits, token: str, attempt: KeyedAttempt | None) -> FileRequest:
    """The link an upload goes to: 409 when full, 410 when expired, except for the retry of an upload it admitted."""
    retrying = attempt is not None and attempt.retrying
    record = await visits.open(token, FileRequest, full=409, closed_too=retrying)
    if retrying and not claimed(record, attempt):
        refuse_if_closed(record, full=409)
    return record


async def take_slot(service: UploadService, links: LinkStore, file_request: FileRequest,
                    attempt: KeyedAttempt | None, number: int = 0) -> None:
    """Count the request's file ``number`` (0 for its first) against ``max_files`` before its bytes are read: 409
    when the link is full. The slot an earlier attempt of the same key took for it is taken already."""
    def take(current: FileRequest) -> None:
        now = time.time()
        if claimed(current, attempt, now) > number:
            return
        refuse_if_closed(current, full=409)
        current.files_received += 1
        if attempt is not None:
            keep_claim(current, attempt.id, number + 1, int(now + service.settings.idempotency_ttl), now)
    try:
        await links.change(file_request, take)
    except LookupError:
        raise not_found() from None


def keep_claim(record: FileRequest, attempt_id: str, slots: int, until: int, now: float) -> None:
    """Note the attempt's slots; expired claims go, and the oldest beyond ``MAX_CLAIMS``."""
    live = {key: claim for key, claim in record.claims.items() if claim[1] > now and key != attempt_id}
    newest = sorted(live, key=lambda key: live[key][1])[-(MAX_CLAIMS - 1):]
    record.claims = {key: live[key] for key in newest} | {attempt_id: [slots, until]}


async def give_back(links: LinkStore, file_request: FileRequest, count: int, attempt: KeyedAttempt | None) -> None:
    """Uncount files that were refused or failed (and take them out of the attempt's claim)."""
    if not count:
        return

    def give_back(current: FileRequest) -> None:
        current.files_received = max(0, current.files_received - count)
        if attempt is not None and attempt.id in current.claims:
            current.claims[attempt.id][0] -= count
            if current.claims[attempt.id][0] <= 0:
                del current.claims[attempt.id]
    with contextlib.suppress(LookupError):  # revoked meanwhile: nothing left to count
        await links.change(file_request, give_back)
