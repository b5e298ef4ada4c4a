"""The ``Idempotency-Key`` request at work, as the code below its route sees it.

A keyed request's new files get ids derived from its key (``Attempt.file_id``), not random ones. So when an
instance dies after committing and before the answer was kept, the retry (``retrying``: it found the dead
attempt's mark) commits to the same ids, finds the files already there, and answers with them instead of
storing them twice; persist and delete, finding their work done, answer as the first would have. Its hold in the
owner's usage ledger has a name derived from the key too (``Attempt.tag``), so the retry takes the dead attempt's
hold over at once, and a note beside it says whether the files it adopts were counted (``reservations``).

Plugins see an attempt as a ``KeyedAttempt`` (``service.keyed_attempt()``): an id the same in every attempt of one
key, so work of their own that the first attempt recorded under it (a link's ``max_files`` slot) is found again by
the retry rather than done twice.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from .files import new_file_id

_current: ContextVar[Attempt | None] = ContextVar("upload_service_idempotent_attempt", default=None)


@dataclass(frozen=True)
class Attempt:
    """One attempt of a keyed request: ``seed`` is secret and unique to the owner and key, ``started`` the first
    attempt's start (the ids' time part), ``retrying`` whether an earlier attempt died midway."""

    seed: bytes
    started: float
    retrying: bool
    _numbers: itertools.count = field(default_factory=itertools.count, compare=False)

    def file_id(self) -> str:
        """The id of this request's next new file: the same, in the same order, in every attempt."""
        digest = hmac.new(self.seed, str(next(self._numbers)).encode(), hashlib.sha256).digest()
        return new_file_id(self.started, int.from_bytes(digest[:8], "big") >> 14)

    def tag(self, purpose: str) -> str:
        """A name for ``purpose`` that every attempt of this request shares and no other request has (a key used
        again once expired is another request)."""
        return hmac.new(self.seed, f"{purpose} {self.started!r}".encode(), hashlib.sha256).hexdigest()[:32]

    def public(self) -> KeyedAttempt:
        """What plugins may know of it: its id (from the secret seed, and the start of the key's first attempt,
        so a key used again once expired is a new attempt) and whether it is a retry."""
        digest = hmac.new(self.seed, f"attempt {self.started!r}".encode(), hashlib.sha256).hexdigest()
        return KeyedAttempt(digest[:32], self.retrying)


@dataclass(frozen=True)
class KeyedAttempt:
    """The ``Idempotency-Key`` request a plugin's code runs in (``service.keyed_attempt()``): ``id`` (32 hex
    digits) is the same in every attempt of one key under one owner or scope, and unique to them; ``retrying``
    says that an earlier attempt died or failed without an answer, so its work may be done in part."""

    id: str
    retrying: bool


def current_attempt() -> Attempt | None:
    """The keyed request this code runs in, or None."""
    return _current.get()


def enter_attempt(attempt: Attempt) -> Token[Attempt | None]:
    """Make ``attempt`` current (in this task); give the result to ``leave_attempt``."""
    return _current.set(attempt)


def leave_attempt(token: Token[Attempt | None]) -> None:
    _current.reset(token)
