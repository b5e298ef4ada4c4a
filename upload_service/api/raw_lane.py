"""``RawUploadLane``: an API client's ``PUT /api/files/<name>`` answered below Quart, the same way.

For a small file, Quart's request machinery (a request context with its session and URL adapter, the
``before_request``/``after_request`` functions, a response object sent in three ASGI messages) cost about as
much CPU as storing the file. This ASGI middleware does that route's work itself: the route's own code
(``store_raw``), the service's error answers, the access record with the request id, the security headers.
Everything else the request would have met in Quart is absent, or the lane is not taken:

- only an API client's upload: a ``Bearer`` token, no cookie (so no session), the app at the root of its server
  (no ASGI ``root_path``), and the request routed, by the app's own URL map, to this service's ``upload_raw``;
  with an ``Idempotency-Key`` (every request behind the shipped nginx config has one), the lane does the key's
  bookkeeping as the route's decorator does (``idempotency.keyed``);
- only while every request function of the app and of the service's blueprint is marked
  ``ignores_raw_uploads``, no Quart request signal has receivers, the app makes its requests with Quart's own
  ``ASGIHTTPConnection`` (the lane has it make this one too), and every auth provider says
  ``needs_request_context = False`` (decided once, at the first such request: registration is over by then).

A host app or plugin that adds an unmarked ``before_request`` simply sends every request through Quart again.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from quart import Quart, Request
from quart.asgi import ASGIHTTPConnection
from quart.signals import got_request_exception, request_finished, request_started, request_tearing_down
from quart.utils import encode_headers
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from ..body import ASGIApp, Receive, Scope, Send
from ..idempotency import keyed
from ..lean_path import all_ignore_raw_uploads
from ..logs import REQUEST_ID_HEADER, begin_request, end_request
from ..responses import error_answer
from ..security_headers import add_security_headers
from .uploads import store_raw

if TYPE_CHECKING:
    from ..service import UploadService

SIGNALS = (request_started, request_finished, got_request_exception, request_tearing_down)


class RawUploadLane:
    """Wraps Quart's ``asgi_app`` (inside the streaming middleware, whose body stream the route reads)."""

    def __init__(self, inner: ASGIApp, app: Quart, service: UploadService) -> None:
        self.inner = inner
        self.app = app
        self.service = service
        self.prefix = f"{service.url_prefix}/api/files/"
        self.endpoint = f"{service.name}.upload_raw"
        self._open: bool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT" and self._candidate(scope) and self.open():
            request = self._request(scope, send)
            filename = self._routed(request)
            if filename is not None:
                await self._answer(request, filename, send)
                return
        await self.inner(scope, receive, send)

    def _candidate(self, scope: Scope) -> bool:
        path = scope["path"]
        if scope.get("root_path") or not path.startswith(self.prefix) or len(path) == len(self.prefix):
            return False
        bearer = False
        for name, value in scope["headers"]:
            if name == b"cookie":
                return False
            if name == b"authorization":
                bearer = value[:7].lower() == b"bearer "
        return bearer

    def open(self) -> bool:
        """Whether the lane may be taken at all (decided once)."""
        if self._open is None:
            app, bp = self.app, self.service.name
            functions = [function for registry in (app.before_request_funcs, app.after_request_funcs,
                                                   app.teardown_request_funcs)
                         for key in (None, bp) for function in registry.get(key, ())]
            self._open = (
                app.asgi_http_class is ASGIHTTPConnection  # the request is made as an app of its own would make it
                and all_ignore_raw_uploads(functions)
                and not any(app.url_value_preprocessors.get(key) for key in (None, bp))
                and not any(signal.receivers for signal in SIGNALS)
                and all(getattr(provider, "needs_request_context", True) is False
                        for provider in self.service.auth.providers.values())
            )
        return self._open

    def _request(self, scope: Scope, send: Send) -> Request:
        """The request Quart makes of ``scope``, by Quart's own ``ASGIHTTPConnection`` (only its context is skipped)."""
        connection = ASGIHTTPConnection(self.app, scope)  # type: ignore[arg-type]  # a dict with extension keys
        return connection._create_request_from_scope(send)  # type: ignore[arg-type]

    def _routed(self, request: Request) -> str | None:
        """The filename, if the app's URL map sends ``request`` to this service's raw upload."""
        try:
            rule, arguments = self.app.create_url_adapter(request).match(return_rule=True)  # type: ignore[union-attr]
        except (HTTPException, RequestRedirect):
            return None
        return arguments.get("filename") if rule.endpoint == self.endpoint else None

    async def _answer(self, request: Request, filename: str, send: Send) -> None:
        begin_request(request.headers.get(REQUEST_ID_HEADER))
        try:
            response = await keyed(self.service, request, functools.partial(store_raw, self.service, request, filename))
        except Exception as error:  # what the blueprint's error handler answers
            response = await error_answer(self.service, error)
        add_security_headers(response)
        end_request(response, request.method, request.path)
        body = await response.get_data()
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": encode_headers(response.headers)})
        await send({"type": "http.response.body", "body": body, "more_body": False})

