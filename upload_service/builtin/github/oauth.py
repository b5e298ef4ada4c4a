"""Browser sign-in with a GitHub OAuth app: ``/login`` sends the browser to GitHub, ``/login/authorized`` is the
callback.

The ``state`` and the PKCE verifier (S256) wait in the session under a namespaced key with an expiry, and each
state is good for one callback. Whatever goes wrong (the user declined, a replayed or forged state, GitHub's
HTTP-200-with-``error`` token answers, GitHub down, an account the access policy keeps out) ends on a page that
says what happened, and no session is started.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx2
from quart import Blueprint, redirect, render_template, request

from upload_service import Identity, PendingSignIns, tls_context

from .client import TIMEOUT, BadCredentials, GitHubAPI, GitHubUnavailable, http_client
from .config import GitHubConfig
from .provider import GitHubProvider, github_identity

if TYPE_CHECKING:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    from upload_service import UploadService

log = logging.getLogger("upload_service.github")
SCOPE = "user:email"
STATE_TTL = 600.0  # seconds a started sign-in may take on GitHub's side
MAX_PENDING = 5  # sign-ins started in other tabs that stay valid


class SignInFailed(Exception):
    """Ends the callback on the error page with ``status`` and a message meant for the person signing in."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def oauth_client(config: GitHubConfig, redirect_uri: str) -> AsyncOAuth2Client:
    # authlib (with cryptography and joserfc, ~14 MiB) is imported by the first sign-in, not by every server
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    return AsyncOAuth2Client(
        client_id=config.client_id, client_secret=config.client_secret, scope=SCOPE, redirect_uri=redirect_uri,
        code_challenge_method="S256", token_endpoint_auth_method="client_secret_post", timeout=TIMEOUT,
        verify=tls_context(),
    )


class SignInFlow:
    """The two routes of the browser flow and the steps between them."""

    def __init__(self, service: UploadService, provider: GitHubProvider) -> None:
        self.service = service
        self.provider = provider
        self.config = provider.config
        self.pending = PendingSignIns(service.session_key("github_pending"), ttl=STATE_TTL, limit=MAX_PENDING)

    def register(self, bp: Blueprint) -> None:
        bp.add_url_rule("/login", "github_login", self.login, methods=["GET", "POST"])
        bp.add_url_rule("/login/authorized", "github_authorized", self.authorized)

    def callback_url(self) -> str:
        """The ``redirect_uri``: on ``PUBLIC_URL`` (or a trusted proxy's host), never on a forged ``Host``."""
        url = self.service.external_url("github_authorized")
        if url is None:
            raise SignInFailed(400, "Sign-in is not available at this address: the operator must set PUBLIC_URL to "
                                    "the address people use for this service (or, behind a proxy, let it through "
                                    "FORWARDED_ALLOW_IPS with X-Forwarded-Host).")
        return url

    async def login(self) -> Any:
        """GET (a link) or POST (the sign-in page's button, with its CSRF token): off to GitHub."""
        if request.method == "POST" and not self.service.csrf_valid((await request.form).get("csrf_token")):
            return await self.failure(403, "The sign-in form was out of date. Go back to the sign-in page and try "
                                           "again.")
        from authlib.common.security import generate_token

        try:
            callback = self.callback_url()
        except SignInFailed as failed:
            return await self.failure(failed.status, failed.message)
        verifier = generate_token(48)
        async with oauth_client(self.config, callback) as client:
            url, state = client.create_authorization_url(self.config.authorize_url, code_verifier=verifier)
        self.pending.add(state, verifier)
        return redirect(url, 303 if request.method == "POST" else 302)

    async def authorized(self) -> Any:
        """GitHub's callback: a session starts only when every step below succeeded."""
        try:
            taken = self.pending.take(request.args.get("state", ""))
            identity = await self.finish(taken[0] if taken else None)
        except SignInFailed as failed:
            return await self.failure(failed.status, failed.message)
        self.provider.start_session(identity)
        return redirect(self.service.url("index"))

    async def failure(self, status: int, message: str) -> tuple[str, int]:
        log.info("GitHub sign-in failed (%d): %s", status, message)
        page = await render_template("upload_service/signin_error.html", service=self.service, url=self.service.url,
                                     csrf_token=self.service.csrf_token(), message=message)
        return page, status

    async def finish(self, verifier: str | None) -> Identity:
        if verifier is None:
            raise SignInFailed(400, "This sign-in link is not valid here: it was already used, it expired, or the "
                                    "sign-in was started in another browser. Start again from the sign-in page.")
        error = request.args.get("error")
        if error == "access_denied":
            raise SignInFailed(403, "GitHub sign-in was cancelled: access to your GitHub account was not granted.")
        if error or not request.args.get("code"):
            detail = request.args.get("error_description") or error or "no authorization code"
            raise SignInFailed(400, f"GitHub did not complete the sign-in: {detail}.")
        return await self.who_signed_in(await self.exchange_code(verifier))

    async def exchange_code(self, verifier: str) -> str:
        """The code for an access token; GitHub answers refusals with HTTP 200 and ``{"error": ...}``."""
        from authlib.common.errors import AuthlibBaseError

        try:
            async with oauth_client(self.config, self.callback_url()) as client:
                token = await client.fetch_token(self.config.token_url, authorization_response=str(request.url),
                                                 state=request.args["state"], code_verifier=verifier)
        except AuthlibBaseError as error:
            detail = error.description or error.error
            raise SignInFailed(400, f"GitHub refused the sign-in ({error.error}): {detail}. Start again.") from None
        except (httpx2.HTTPError, ValueError):
            raise SignInFailed(503, "GitHub could not be reached to finish the sign-in. Try again later.") from None
        if not isinstance(token.get("access_token"), str):
            raise SignInFailed(400, "GitHub's answer held no access token. Start again.")
        return token["access_token"]

    async def who_signed_in(self, access_token: str) -> Identity:
        """The token's owner, if the access policy lets them in; the token itself is dropped afterwards."""
        try:
            async with http_client() as http:
                api = GitHubAPI(self.config.api_url, access_token, http)
                user = await api.user()
                refusal = await self.provider.policy.refusal(api, user)
                if refusal:
                    raise SignInFailed(403, refusal[0].upper() + refusal[1:] + ".")
                email = user.email or await api.primary_email()
        except BadCredentials:
            raise SignInFailed(400, "GitHub did not accept the token it had just issued. Start again.") from None
        except GitHubUnavailable:
            raise SignInFailed(503, "GitHub could not be reached to finish the sign-in. Try again later.") from None
        return github_identity(user, email)
