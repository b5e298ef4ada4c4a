"""Who is calling: ask each auth provider in turn, and guard cookie-authenticated writes against CSRF."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from quart import Request

from .errors import Problem, StartupError
from .identity import Identity
from .sessions import csrf_valid

if TYPE_CHECKING:
    from .service import UploadService

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


@runtime_checkable
class AuthProvider(Protocol):
    """What ``register_auth_providers`` registers. ``login_url`` (optional) puts a button on the sign-in page."""

    name: str

    async def authenticate(self, request: Request) -> Identity | None: ...


class AuthProviders:
    """The registered providers of one service, in registration order."""

    def __init__(self) -> None:
        self.providers: dict[str, Any] = {}

    def register(self, provider: Any) -> None:
        name = getattr(provider, "name", None)
        if not isinstance(name, str) or not name:
            raise StartupError(f"auth provider {provider!r} has no name")
        if not callable(getattr(provider, "authenticate", None)):
            raise StartupError(f"auth provider {name!r} has no authenticate(request) method")
        if name in self.providers:
            raise StartupError(f"two auth providers are named {name!r}")
        self.providers[name] = provider

    def with_login(self) -> list[Any]:
        return [provider for provider in self.providers.values() if getattr(provider, "login_url", None)]

    async def identify(self, request: Request) -> Identity | None:
        """The first identity any provider returns; providers may raise a Problem (403, 503) themselves."""
        for provider in self.providers.values():
            identity = await provider.authenticate(request)
            if identity is not None:
                return identity
        return None


def _unauthorized(request: Request) -> Problem:
    if request.headers.get("Authorization"):
        return Problem(401, "the credentials are not valid", reason="bad_credentials",
                       headers={"WWW-Authenticate": 'Bearer realm="upload-service", error="invalid_token"'})
    return Problem(401, "sign in or send Authorization: Bearer <token>", reason="no_credentials",
                   headers={"WWW-Authenticate": 'Bearer realm="upload-service"'})


def needs_csrf(request: Request) -> bool:
    """Cookie-authenticated state changes need a CSRF token; bearer-token requests carry no ambient authority.

    Only a *Bearer* token exempts a request: a browser adds ``Authorization: Basic`` by itself wherever a proxy
    in front asked for it, so that header says nothing about who made the request.
    """
    return request.method not in SAFE_METHODS and bearer_token(request) is None


async def require_identity(service: UploadService, request: Request, *, csrf_later: bool = False) -> Identity:
    """The caller's identity, or a 401 problem (429 over ``RATE_LIMIT`` or ``RATE_LIMIT_PER_ADDRESS``). Checks the
    CSRF header unless the caller checks a form field."""
    identity = await service.identify(request)
    if identity is None:
        raise _unauthorized(request)
    # the scope takes the rate limiter's flag: ASGI allows extension keys, which the scope's TypedDict does not list
    await service.rate_limits.check_identity(identity, cast("dict[str, Any]", request.scope))
    if needs_csrf(request) and not csrf_later:
        check_csrf(service, request.headers.get(CSRF_HEADER))
    return identity


def check_csrf(service: UploadService, presented: str | None) -> None:
    if not csrf_valid(service.name, presented):
        raise Problem(403, f"missing or invalid CSRF token: a browser session's state-changing request carries the "
                           f"session's token in the {CSRF_HEADER} header (or the {CSRF_FIELD} form field)",
                      reason="csrf")


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
