"""Browser sessions of the service: the signed-in identity and the CSRF token, under namespaced keys.

Keys are prefixed with the service's name so that the service coexists with a host app's own session data
(and two services in one app do not see each other's sign-ins). Auth providers call ``sign_in`` from their
login routes and ``signed_in`` from ``authenticate``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from quart import session

from .identity import Identity


def session_key(service_name: str, what: str) -> str:
    return f"{service_name}.{what}"


def sign_in(service_name: str, identity: Identity) -> None:
    """Start a session for ``identity`` with a fresh CSRF token (a new token on every sign-in)."""
    session[session_key(service_name, "identity")] = identity.to_dict()
    session[session_key(service_name, "csrf")] = secrets.token_urlsafe(32)
    session.permanent = True


def sign_out(service_name: str) -> None:
    for what in ("identity", "csrf"):
        session.pop(session_key(service_name, what), None)


def signed_in(service_name: str, provider: str | None = None) -> Identity | None:
    """The session's identity (only if it came from ``provider`` when given)."""
    data = session.get(session_key(service_name, "identity"))
    if not isinstance(data, dict):
        return None
    identity = Identity.from_dict(data)
    return identity if provider is None or identity.provider == provider else None


def csrf_token(service_name: str) -> str:
    """The session's CSRF token, created on first use (the sign-in page needs one before anyone signs in)."""
    key = session_key(service_name, "csrf")
    if not session.get(key):
        session[key] = secrets.token_urlsafe(32)
    return session[key]


def csrf_valid(service_name: str, presented: str | None) -> bool:
    expected = session.get(session_key(service_name, "csrf"))
    return bool(expected and presented and hmac.compare_digest(str(expected), str(presented)))


class PendingSignIns:
    """Sign-ins this browser started and has not finished: ``state`` -> what the callback needs (a PKCE verifier,
    a nonce ...), kept in the session under ``key``.

    A ``state`` is taken once, whatever the callback then finds; it lives ``ttl`` seconds, and the ``limit``
    newest stay valid, so a sign-in started in another tab still works while an abandoned one cannot pile up.
    """

    def __init__(self, key: str, *, ttl: float = 600.0, limit: int = 5) -> None:
        self.key, self.ttl, self.limit = key, ttl, limit

    def _live(self) -> dict[str, list[Any]]:
        pending = session.get(self.key)
        if not isinstance(pending, dict):
            return {}
        now = time.time()
        return {state: entry for state, entry in pending.items()
                if isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[-1], int | float)
                and entry[-1] > now}

    def add(self, state: str, *values: str) -> None:
        pending = self._live()
        pending[state] = [*values, time.time() + self.ttl]
        session[self.key] = dict(sorted(pending.items(), key=lambda item: item[1][-1])[-self.limit:])

    def take(self, state: str) -> tuple[str, ...] | None:
        """The values ``add`` kept for ``state`` if it is pending and fresh; either way it cannot be used again."""
        pending = self._live()
        entry = pending.pop(state, None) if state else None
        if pending:
            session[self.key] = pending
        else:
            session.pop(self.key, None)
        return tuple(entry[:-1]) if entry else None
