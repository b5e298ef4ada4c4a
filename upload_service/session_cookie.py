"""The stand-alone app's session cookie: Secure exactly when the request came over https.

Quart decides the cookie's ``Secure`` flag from ``SESSION_COOKIE_SECURE`` once for the whole app, which is
wrong either way for a server reached over plain http on localhost and over https behind TLS. This interface
decides per request instead. ``create_app`` installs it; an embedding host app keeps its own session
interface and configuration (it may install this one too: ``app.session_interface = SchemeAwareSessionInterface()``).
"""

from __future__ import annotations

from quart import Quart, has_request_context, request
from quart.sessions import SecureCookieSession, SecureCookieSessionInterface
from quart.wrappers import BaseRequestWebsocket


class SchemeAwareSessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions whose cookie is ``Secure`` when the current request is https.

    ``SESSION_COOKIE_SECURE=True`` in the app's config still forces the flag on (for a TLS-terminating proxy
    that does not pass the scheme on).
    """

    def get_cookie_secure(self, app: Quart) -> bool:
        if super().get_cookie_secure(app):
            return True
        return has_request_context() and request.scheme == "https"

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> SecureCookieSession | None:
        """A request without the cookie (an API client with a bearer token) gets a new empty session straight
        away: Quart builds the signer, deriving its key from the secret, before it looks for the cookie."""
        if app.secret_key and self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return await super().open_session(app, request)
