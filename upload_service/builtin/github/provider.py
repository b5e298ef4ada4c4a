"""The ``github`` auth provider: a GitHub bearer token, or a session started by GitHub sign-in.

Order with the other providers: this plugin registers its provider last (``trylast``), so a static
``API_TOKENS`` token or the dev token is recognised before GitHub is asked anything. On top of that, only
tokens in one of GitHub's formats (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``... prefixes, ``github_pat_``,
or the 40-hex legacy form) are sent to GitHub at all; anything else is not a GitHub token and gets the core's 401
without a GitHub call.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from quart import Request, session

from upload_service import Identity, Problem, bearer_token

from .access import AccessPolicy
from .client import BadCredentials, GitHubAPI, GitHubUnavailable, GitHubUser, http_client, unavailable
from .config import GitHubConfig
from .token_cache import TokenCache

log = logging.getLogger("upload_service.github")
PROVIDER_NAME = "github"
GITHUB_TOKEN = re.compile(r"(?:gh[a-z]_|github_pat_)[A-Za-z0-9_]{20,255}|[0-9a-f]{40}")


@dataclass(frozen=True)
class Refusal:
    """A valid GitHub account that the access policy keeps out, and why."""

    reason: str


def github_identity(user: GitHubUser, email: str | None = None) -> Identity:
    """``github:<numeric id>``: a renamed account keeps its files; the login is what the UI shows."""
    return Identity(id=f"github:{user.id}", name=user.login, provider=PROVIDER_NAME, email=email or user.email)


def looks_like_github_token(token: str) -> bool:
    return GITHUB_TOKEN.fullmatch(token) is not None


class GitHubProvider:
    name = PROVIDER_NAME
    needs_request_context = False  # with a bearer token, only the request given is read
    title = "Sign in with GitHub"
    login_method = "post"  # the sign-in page posts a form with the CSRF token; a plain GET link works too

    def __init__(self, service: Any, config: GitHubConfig) -> None:
        self.service = service
        self.login_url = f"{service.url_prefix}/login"
        self.login_origins = (config.url,)  # the sign-in form post goes on to GitHub (the page's CSP form-action)
        self.config = config
        self.policy = AccessPolicy(config.allowed_users, config.allowed_orgs)
        self.tokens: TokenCache[Identity | Refusal | None] = TokenCache(config.token_cache_ttl)

    @property
    def _rules_key(self) -> str:
        return self.service.session_key("github_rules")

    def start_session(self, identity: Identity) -> None:
        """Sign in, remembering under which access rules, so a change of ``ALLOWED_*`` ends older sessions."""
        self.service.sign_in(identity)
        session[self._rules_key] = self.policy.fingerprint

    def _session_identity(self) -> Identity | None:
        identity = self.service.signed_in(provider=self.name)
        if identity is not None and session.get(self._rules_key) != self.policy.fingerprint:
            return None  # signed in under access rules that no longer hold: sign in again
        return identity

    async def authenticate(self, request: Request) -> Identity | None:
        token = bearer_token(request)
        if token is None:
            return self._session_identity()
        if not looks_like_github_token(token):
            return None
        verdict = await self.tokens.get(token, lambda: self._check_token(token))
        if isinstance(verdict, Refusal):
            raise Problem(403, verdict.reason, reason="not_allowed")
        return verdict

    async def _check_token(self, token: str) -> Identity | Refusal | None:
        """Ask GitHub who owns ``token`` and whether they may enter; None when GitHub says Bad credentials."""
        try:
            async with http_client() as http:
                api = GitHubAPI(self.config.api_url, token, http)
                user = await api.user()
                refusal = await self.policy.refusal(api, user)
        except BadCredentials:
            return None
        except GitHubUnavailable as error:
            log.warning("a GitHub token could not be checked: %s", error)
            raise unavailable(error) from None
        return Refusal(refusal) if refusal else github_identity(user)
