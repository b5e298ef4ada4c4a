"""The ``--dev`` sign-in: one local user, by a button in the browser or by the printed dev API token.

Active only when ``DEV`` is on (``upload-service --dev``), which also binds the server to 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from quart import Request, redirect, request

from upload_service import Identity, bearer_token, hookimpl

log = logging.getLogger("upload_service.dev")
DEV_IDENTITY = Identity(id="dev:local", name="local developer", provider="dev", email=None)


class DevSignIn:
    name = "dev"
    needs_request_context = False  # with a bearer token, only the request given is read
    title = "Sign in as the local developer"
    login_method = "post"  # the sign-in page posts a form with the CSRF token (other providers get a link)
    login_origins = ()  # the form post lands back on this service (the page's CSP form-action stays 'self')

    def __init__(self, service) -> None:
        self.service = service
        self.login_url = f"{service.url_prefix}/login/dev"
        configured = service.settings.dev_token
        self.token = configured.get_secret_value() if configured else secrets.token_urlsafe(24)
        if configured is None:
            log.warning("dev API token for this process: %s", self.token)

    async def authenticate(self, request: Request) -> Identity | None:
        token = bearer_token(request)
        if token is not None:
            presented = hashlib.sha256(token.encode()).digest()
            expected = hashlib.sha256(self.token.encode()).digest()
            return DEV_IDENTITY if hmac.compare_digest(presented, expected) else None
        return self.service.signed_in(provider=self.name)


@hookimpl
def register_auth_providers(register, service) -> None:
    if service.settings.dev:
        register(DevSignIn(service))


@hookimpl
def register_routes(blueprint, service) -> None:
    if not service.settings.dev:
        return

    @blueprint.route("/login/dev", methods=["GET", "POST"], endpoint="login_dev")
    async def login_dev():
        if request.method == "GET":
            return redirect(service.url("index"))
        form = await request.form
        service.check_csrf(form.get("csrf_token"))
        service.sign_in(DEV_IDENTITY)
        return redirect(service.url("index"), 303)
