"""Browser sign-in with one OpenID Provider: ``/login/<name>`` sends the browser to the provider with an
authorization code request (PKCE S256, ``state``, ``nonce``), ``/login/<name>/authorized`` is the callback.

``state``, the PKCE verifier and the ``nonce`` wait in the session under the provider's own key, for ten minutes
and one callback each. The callback exchanges the code, checks the ID token (signature, ``iss``, ``aud``, ``exp``,
``nonce``), reads the userinfo endpoint for claims the ID token leaves out (``groups`` often), applies
``_ALLOWED``, and only then starts a session. Any failure ends on a page saying what happened.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from typing import Any
from urllib.parse import urlencode

import httpx2
from quart import Blueprint, redirect, render_template, request

from upload_service import Identity, PendingSignIns

from .issuer import IssuerUnavailable, http_client
from .provider import OIDCProvider, identity_for
from .tokens import InvalidToken, id_token_claims

log = logging.getLogger("upload_service.oidc")
STATE_TTL = 600.0
MAX_PENDING = 5


class SignInFailed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class SignInFlow:
    def __init__(self, service: Any, provider: OIDCProvider) -> None:
        self.service = service
        self.provider = provider
        self.config = provider.config
        self.issuer = provider.issuer
        self.pending = PendingSignIns(service.session_key(f"oidc_{self.config.name}_pending"), ttl=STATE_TTL,
                                      limit=MAX_PENDING)
        self.endpoint = f"oidc_{self.config.name}_authorized"

    def register(self, bp: Blueprint) -> None:
        name = self.config.name
        bp.add_url_rule(f"/login/{name}", f"oidc_{name}_login", self.login)
        bp.add_url_rule(f"/login/{name}/authorized", self.endpoint, self.authorized)

    def callback_url(self) -> str:
        url = self.service.external_url(self.endpoint)
        if url is None:
            raise SignInFailed(400, "Sign-in is not available at this address: the operator must set PUBLIC_URL to "
                                    "the address people use for this service.")
        return url

    async def login(self) -> Any:
        try:
            callback = self.callback_url()
            metadata = await self.issuer.metadata()
        except SignInFailed as failed:
            return await self.failure(failed.status, failed.message)
        except IssuerUnavailable as error:
            log.warning("OpenID Connect provider %s: %s", self.config.name, error)
            return await self.failure(503, f"{self.config.title}: the identity provider cannot be reached. "
                                           "Try again later.")
        state, verifier, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(48), secrets.token_urlsafe(24)
        self.pending.add(state, verifier, nonce)
        query = urlencode({
            "response_type": "code", "client_id": self.config.client_id, "redirect_uri": callback,
            "scope": self.config.scopes, "state": state, "nonce": nonce,
            "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"})
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return redirect(f"{metadata.authorization_endpoint}{separator}{query}")

    async def authorized(self) -> Any:
        try:
            taken = self.pending.take(request.args.get("state", ""))
            identity = await self.finish((taken[0], taken[1]) if taken else None)
        except SignInFailed as failed:
            return await self.failure(failed.status, failed.message)
        self.provider.start_session(identity)
        return redirect(self.service.url("index"))

    async def failure(self, status: int, message: str) -> tuple[str, int]:
        log.info("OpenID Connect sign-in with %s failed (%d): %s", self.config.name, status, message)
        page = await render_template("upload_service/signin_error.html", service=self.service, url=self.service.url,
                                     csrf_token=self.service.csrf_token(), message=message)
        return page, status

    async def finish(self, pending: tuple[str, str] | None) -> Identity:
        if pending is None:
            raise SignInFailed(400, "This sign-in link is not valid here: it was already used, it expired, or the "
                                    "sign-in was started in another browser. Start again from the sign-in page.")
        verifier, nonce = pending
        if request.args.get("iss", self.config.issuer) != self.config.issuer:  # RFC 9207: mix-up defence
            raise SignInFailed(400, "The answer came from another identity provider than the one asked. Start again.")
        error = request.args.get("error")
        if error == "access_denied":
            raise SignInFailed(403, f"{self.config.title} was cancelled: access was not granted.")
        code = request.args.get("code")
        if error or not code:
            detail = request.args.get("error_description") or error or "no authorization code"
            raise SignInFailed(400, f"The identity provider did not complete the sign-in: {detail}.")
        try:
            claims = await self.claims(code, verifier, nonce)
        except IssuerUnavailable as failure:
            log.warning("OpenID Connect provider %s: %s", self.config.name, failure)
            raise SignInFailed(503, "The identity provider could not be reached to finish the sign-in. "
                                    "Try again later.") from None
        except InvalidToken as invalid:
            raise SignInFailed(400, f"The identity provider's ID token was refused: {invalid}. Start again.") from None
        if not self.config.admits(claims):
            raise SignInFailed(403, f"Your {self.config.name} account may not use this service.")
        return identity_for(self.config, claims)

    async def claims(self, code: str, verifier: str, nonce: str) -> dict[str, Any]:
        """The verified ID token's claims, with the userinfo endpoint's added where the ID token has none."""
        metadata = await self.issuer.metadata()
        async with http_client() as http:
            tokens = await self.exchange(http, metadata.token_endpoint, code, verifier)
            claims = await id_token_claims(self.issuer, tokens["id_token"], nonce)
            access_token = tokens.get("access_token")
            if metadata.userinfo_endpoint and isinstance(access_token, str):
                info = await self.userinfo(http, metadata.userinfo_endpoint, access_token)
                if info.get("sub") == claims["sub"]:
                    claims = {**info, **claims}
        return claims

    async def userinfo(self, http: httpx2.AsyncClient, url: str, access_token: str) -> dict[str, Any]:
        """The userinfo claims, or none when the endpoint refuses the token (an access token meant for an API
        resource, not for userinfo, is refused there): the verified ID token is enough to sign in."""
        try:
            response = await http.get(url, headers={"Authorization": f"Bearer {access_token}",
                                                    "Accept": "application/json"})
        except httpx2.HTTPError as error:
            raise IssuerUnavailable(f"{type(error).__name__} at the userinfo endpoint") from None
        if response.status_code >= 500:
            raise IssuerUnavailable(f"the userinfo endpoint answered {response.status_code}")
        try:
            info = response.json() if response.status_code == 200 else {}
        except ValueError:
            info = {}
        return info if isinstance(info, dict) else {}

    async def exchange(self, http: httpx2.AsyncClient, url: str, code: str, verifier: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.callback_url(),
                "code_verifier": verifier}
        auth: httpx2.BasicAuth | Any = httpx2.USE_CLIENT_DEFAULT
        if self.config.client_secret:
            auth = httpx2.BasicAuth(self.config.client_id, self.config.client_secret)
        else:  # a public client names itself in the form
            form["client_id"] = self.config.client_id
        try:
            response = await http.post(url, data=form, auth=auth, headers={"Accept": "application/json"})
        except httpx2.HTTPError as error:
            raise IssuerUnavailable(f"{type(error).__name__} at the token endpoint") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 500 or not isinstance(body, dict):
            raise IssuerUnavailable(f"the token endpoint answered {response.status_code}")
        if response.status_code != 200 or "error" in body:
            detail = body.get("error_description") or body.get("error") or response.status_code
            raise SignInFailed(400, f"The identity provider refused the sign-in: {detail}. Start again.")
        if not isinstance(body.get("id_token"), str):
            raise SignInFailed(400, "The identity provider's answer held no ID token. Start again.")
        return body
