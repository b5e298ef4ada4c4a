"""problem+json for unknown URLs and methods under ``<prefix>/api/``, also inside a host app.

Quart only consults a blueprint's error handlers for URLs that matched one of its routes, so inside a host
app an unknown ``/files/api/nope`` would get the host's HTML 404. A catch-all route of the service's own
(the lowest-priority rule werkzeug has: one path converter) answers instead, without touching the host's
error handlers. Because the catch-all accepts every method, it also stands in for the 405 werkzeug would
have given; it works that answer out by matching the service's other API routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, request
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, RequestRedirect, Rule

from ..errors import Problem

if TYPE_CHECKING:
    from ..service import UploadService

FALLBACK_ENDPOINT = "api_fallback"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def api_rules(service: UploadService) -> Map:
    """The service's API routes without the catch-all, as a map of their own to match against."""
    own = f"{service.name}."
    assert service.app is not None, "call init_app first"
    app_map = service.app.url_map
    return Map([Rule(rule.rule, methods=rule.methods, endpoint=rule.endpoint, defaults=rule.defaults)
                for rule in app_map.iter_rules()
                if rule.endpoint.startswith(own) and rule.endpoint != own + FALLBACK_ENDPOINT],
               converters=app_map.converters)


def register_api_fallback(bp: Blueprint, service: UploadService) -> None:
    rules: list[Map] = []  # built on first use: plugin and host routes are all registered by then

    @bp.route("/api/", defaults={"rest": ""}, methods=ALL_METHODS, endpoint=FALLBACK_ENDPOINT)
    @bp.route("/api/<path:rest>", methods=ALL_METHODS, endpoint=FALLBACK_ENDPOINT)
    async def api_fallback(rest: str) -> Any:
        if not rules:
            rules.append(api_rules(service))
        try:
            rules[0].bind("service").match(request.path, method=request.method)
        except MethodNotAllowed as error:
            allowed = ", ".join(sorted(error.valid_methods or []))
            raise Problem(405, f"{request.method} is not allowed here; allowed: {allowed}",
                          headers={"Allow": allowed}, reason="method_not_allowed") from None
        except (NotFound, RequestRedirect):  # unknown, or only known with(out) a trailing slash
            pass
        raise Problem(404, f"there is no API route {request.path}", reason="no_such_route")

    api_fallback.openapi_hidden = True  # type: ignore[attr-defined]
