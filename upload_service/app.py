"""``create_app``: the stand-alone server's Quart app with one upload service mounted at ``/``."""

from __future__ import annotations

from typing import Any

from quart import Quart, request
from werkzeug.exceptions import HTTPException

from .errors import Problem, StartupError
from .logs import configure_logging
from .proxies import TrustedProxies, parse_networks
from .responses import problem_response
from .security_headers import register_security_headers
from .service import UploadService
from .session_cookie import SchemeAwareSessionInterface
from .settings import Settings


def create_app(settings: Settings | None = None, *, entry_points: bool = True, **service_options: Any) -> Quart:
    """Build the app from ``settings`` (default: ``Settings.from_env()``, the environment and ``.env``);
    ``service_options`` go to ``UploadService``. ``entry_points=False`` leaves installed plugins out (see
    ``make_plugin_manager``)."""
    settings = settings if settings is not None else Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    app = Quart(__name__, static_folder=None)  # static files belong to the service's blueprint
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="upload_service_session",
        MAX_CONTENT_LENGTH=1024 * 1024,  # plain form posts only; uploads stream past Quart's body buffer
    )
    app.session_interface = SchemeAwareSessionInterface()
    UploadService(app, settings=settings, entry_points=entry_points, **service_options)
    if settings.trusted_proxies:
        try:
            networks = parse_networks(settings.trusted_proxies)
        except ValueError as error:
            raise StartupError(f"FORWARDED_ALLOW_IPS: {error}") from error
        # Quart's way to add ASGI middleware, but its types see asgi_app as a method taking TypedDict scopes
        app.asgi_app = TrustedProxies(app.asgi_app, networks)  # type: ignore[method-assign, assignment]

    register_security_headers(app)  # answers outside the service's routes too: unknown paths, wrong methods

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Any:
        """Unknown routes and methods under /api answer problem+json like every other API error."""
        if request.path.startswith("/api/"):
            return problem_response(Problem(error.code or 500, error.description or error.name, title=error.name))
        return error

    return app
