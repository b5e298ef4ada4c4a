"""The auth provider ``oidc:<name>``: a browser session its sign-in started, or (with ``_BEARER``) a JWT access
token of its issuer.

A bearer token that is not a JWT of this issuer is left to the other providers (None); one that is, but fails a
check (signature, audience, expiry), is None too, so the core answers 401. A valid token of someone ``_ALLOWED``
keeps out is 403. The provider being down is 503, never a way in.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from quart import Request, session

from upload_service import Identity, Problem, bearer_token

from .config import ProviderConfig
from .issuer import Issuer, IssuerUnavailable
from .tokens import InvalidToken, access_token_claims

log = logging.getLogger("upload_service.oidc")


def unavailable(config: ProviderConfig, error: Exception) -> Problem:
    return Problem(503, f"the OpenID Provider {config.name} could not be asked ({error}); try again later",
                   reason="oidc_unavailable", headers={"Retry-After": "30"})


def identity_for(config: ProviderConfig, claims: dict[str, Any]) -> Identity:
    """``oidc:<name>:<sub>``: the subject is the provider's stable id; a new email or user name keeps the files."""
    email = claims.get("email") if isinstance(claims.get("email"), str) else None
    shown = next((claims[key] for key in ("preferred_username", "name", "email")
                  if isinstance(claims.get(key), str) and claims[key]), claims["sub"])
    return Identity(id=f"oidc:{config.name}:{claims['sub']}", name=shown, email=email, provider=f"oidc:{config.name}")


def _token_issuer(token: str) -> str | None:
    """The unverified ``iss`` of a JWT, only to tell whether the token is meant for this provider at all."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeError):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


class OIDCProvider:
    login_method = "get"
    needs_request_context = False  # with a bearer token, only the request given is read

    def __init__(self, service: Any, config: ProviderConfig) -> None:
        self.service = service
        self.config = config
        self.name = f"oidc:{config.name}"
        self.title = config.title
        self.login_url = f"{service.url_prefix}/login/{config.name}"
        self.issuer = Issuer(config)

    @property
    def _rules_key(self) -> str:
        return self.service.session_key(f"oidc_{self.config.name}_rules")

    def start_session(self, identity: Identity) -> None:
        """Sign in, remembering under which issuer and ``_ALLOWED`` rules, so changing them ends older sessions."""
        self.service.sign_in(identity)
        session[self._rules_key] = self.config.fingerprint

    def _session_identity(self) -> Identity | None:
        identity = self.service.signed_in(provider=self.name)
        if identity is not None and session.get(self._rules_key) != self.config.fingerprint:
            return None
        return identity

    async def authenticate(self, request: Request) -> Identity | None:
        token = bearer_token(request)
        if token is None:
            return self._session_identity()
        if not self.config.bearer or _token_issuer(token) != self.config.issuer:
            return None
        try:
            claims = await access_token_claims(self.issuer, token)
        except InvalidToken as error:
            log.info("OpenID Connect provider %s: a bearer token was refused: %s", self.config.name, error)
            return None
        except IssuerUnavailable as error:
            log.warning("OpenID Connect provider %s: a bearer token could not be checked: %s", self.config.name, error)
            raise unavailable(self.config, error) from None
        if not self.config.admits(claims):
            raise Problem(403, f"this {self.config.name} account may not use this service", reason="not_allowed")
        return identity_for(self.config, claims)
