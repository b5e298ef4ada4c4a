"""Static bearer tokens from ``API_TOKENS`` (``login:token,...``) for machines and CI.

Identities are ``token:<login>``: an operator's token is never the same owner as a GitHub account.
"""

from __future__ import annotations

import hashlib

from quart import Request

from upload_service import Identity, StartupError, bearer_token, hookimpl


class StaticTokens:
    name = "api_tokens"
    needs_request_context = False  # with a bearer token, only the request given is read

    def __init__(self, tokens: dict[str, str]) -> None:
        # Look tokens up by their hash, so the comparison time says nothing about a token's characters.
        self._logins = {hashlib.sha256(token.encode()).digest(): login for token, login in tokens.items()}

    async def authenticate(self, request: Request) -> Identity | None:
        token = bearer_token(request)
        if token is None:
            return None
        login = self._logins.get(hashlib.sha256(token.encode()).digest())
        if login is None:
            return None
        return Identity(id=f"token:{login}", name=login, provider=self.name)


@hookimpl
def register_auth_providers(register, service) -> None:
    try:
        tokens = service.settings.static_api_tokens
    except ValueError as error:
        raise StartupError(str(error)) from error
    if tokens:
        register(StaticTokens(tokens))
