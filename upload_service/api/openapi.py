"""The OpenAPI 3.1 document of one service, generated from its routes, and the page that renders it.

Paths, methods and path parameters come from the app's URL map (so a route cannot be missing), summaries and
descriptions from the view functions' docstrings, and bodies, answers and errors from ``@documented`` placed
under each ``@bp.route``. Schemas are the pydantic models of ``api.schemas``. A plugin's API route without
``@documented`` still appears, with its docstring and a generic answer.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from quart import Blueprint, render_template

from ..rate_limits import UNCOUNTED
from ..responses import json_response
from . import schemas

if TYPE_CHECKING:
    from ..service import UploadService

OPENAPI_VERSION = "3.1.0"
_PARAMETER = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
BINARY = {"type": "string", "format": "binary"}


@dataclass(frozen=True)
class Reply:
    """One successful answer: its description, body schema (a model, a JSON schema dict or None) and type."""

    description: str
    schema: Any = None
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter: what it means, its JSON schema, and whether a client must send it.

    The schema says exactly what the route accepts (an id's alphabet, a page size's bounds), so that a client,
    and a fuzzer, can tell a well-formed request from a malformed one.
    """

    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class RouteDoc:
    """What ``@documented`` records on a view function."""

    replies: dict[int, Reply]
    errors: dict[int, str]
    body: dict[str, Any]
    query: dict[str, Param]
    path: dict[str, Param]
    headers: dict[str, Param]
    public: bool


IDEMPOTENCY_KEY = Param(
    'a key of the client\'s (a quoted string, "8e03978e-40d5-43e8-bc93-6894a57f9324", or a bare token; at most 255 '
    "characters) that makes a retry safe: a repeat by the same owner gets the first answer again, with "
    "Idempotent-Replayed: true, and nothing is done twice; kept for IDEMPOTENCY_TTL",
    {"type": "string",
     "pattern": r"^(?:\x22[\x20\x21\x23-\x5b\x5d-\x7e]{1,255}\x22|[-!#$%&\x27*+.^_`|~0-9A-Za-z:/=]{1,255})$"})
IDEMPOTENCY_ERRORS = {
    400: "a malformed Idempotency-Key (reason bad_idempotency_key)",
    409: "a request with this Idempotency-Key is still in progress (reason idempotency_in_progress); retry later",
    422: "this Idempotency-Key was used for another request (reason idempotency_key_reused)",
}


def _param(value: str | tuple[str, str] | Param) -> Param:
    """``Param`` from the short forms: a path description, or a query ``(JSON type, description)``."""
    if isinstance(value, Param):
        return value
    if isinstance(value, tuple):
        kind, what = value
        return Param(what, {"type": kind})
    return Param(value)


def documented(
    *,
    replies: dict[int, Reply],
    errors: dict[int, str] | None = None,
    body: dict[str, Any] | None = None,
    query: Mapping[str, tuple[str, str] | Param] | None = None,
    path: Mapping[str, str | Param] | None = None,
    headers: Mapping[str, Param] | None = None,
    public: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Describe a route for the OpenAPI document; put it under ``@bp.route``.

    ``body`` maps media types to schemas; ``query``, ``path`` and ``headers`` map parameter names to a
    ``Param`` (or, short, a query's ``(JSON type, description)`` and a path parameter's description);
    ``errors`` maps statuses to when they happen. Routes that are not ``public`` get the authentication
    errors (401, and 403 for a missing CSRF token) added.
    """

    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        view.openapi = RouteDoc(  # type: ignore[attr-defined]
            replies, errors or {}, body or {}, {name: _param(value) for name, value in (query or {}).items()},
            {name: _param(value) for name, value in (path or {}).items()}, dict(headers or {}), public)
        return view

    return mark


class _Schemas:
    """Turns models into ``$ref``s and collects their JSON schemas as components."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, schema: Any) -> dict[str, Any]:
        if isinstance(schema, dict):
            return schema
        if inspect.isclass(schema) and issubclass(schema, BaseModel):
            generated = schema.model_json_schema(ref_template="#/components/schemas/{model}")
            self.components.update(generated.pop("$defs", {}))
            self.components[schema.__name__] = generated
            return {"$ref": f"#/components/schemas/{schema.__name__}"}
        raise TypeError(f"not a schema: {schema!r}")


def openapi_path(rule: str) -> tuple[str, list[str]]:
    """Werkzeug's ``/api/files/<path:filename>`` -> ``/api/files/{filename}`` and its parameter names."""
    return _PARAMETER.sub(lambda match: "{" + match.group(1) + "}", rule), _PARAMETER.findall(rule)


def _problem(description: str, refs: _Schemas) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": refs.ref(schemas.Problem)}}}


def _operation(service: UploadService, endpoint: str, operation_id: str, view: Callable[..., Any], method: str,
               params: list[str], names: list[str], refs: _Schemas) -> dict[str, Any]:
    doc: RouteDoc | None = getattr(view, "openapi", None)
    text = inspect.getdoc(view) or endpoint.replace("_", " ")
    summary, _, description = text.partition("\n")
    operation: dict[str, Any] = {"operationId": operation_id, "x-endpoint": endpoint, "summary": summary.strip(),
                                 "tags": [service.name]}
    if description.strip():
        operation["description"] = description.strip()
    described = doc.path if doc else {}
    operation["parameters"] = [
        _parameter(name, "path", described.get(own, Param(own.replace("_", " "))), required=True)
        for name, own in zip(names, params, strict=True)
    ]
    if doc is None:
        operation["responses"] = {"default": {"description": "see the plugin's documentation"}}
        return operation
    operation["parameters"] += [_parameter(name, "query", param) for name, param in doc.query.items()]
    operation["parameters"] += [_parameter(name, "header", param) for name, param in doc.headers.items()]
    if doc.body and method in ("PUT", "POST", "PATCH"):
        operation["requestBody"] = {"required": True, "content": {
            media: {"schema": refs.ref(schema)} for media, schema in doc.body.items()}}
    responses: dict[str, Any] = {}
    for status, reply in doc.replies.items():
        answer: dict[str, Any] = {"description": reply.description}
        if reply.schema is not None:
            answer["content"] = {reply.media_type: {"schema": refs.ref(reply.schema)}}
        if reply.headers:
            answer["headers"] = {name: {"description": what, "schema": {"type": "string"}}
                                 for name, what in reply.headers.items()}
        responses[str(status)] = answer
    errors = dict(doc.errors)
    if getattr(view, "idempotent", False):
        operation["parameters"].append(_parameter("Idempotency-Key", "header", IDEMPOTENCY_KEY))
        for status, when in IDEMPOTENCY_ERRORS.items():
            errors[status] = f"{errors[status]}; or {when}" if status in errors else when
    if not doc.public:
        errors.setdefault(401, "no credentials, or credentials that are not valid (WWW-Authenticate: Bearer)")
        if method not in ("GET", "HEAD"):
            errors.setdefault(403, "a cookie-authenticated request without a valid CSRF token")
        operation["security"] = [{"bearer": []}, {"session": []}]
        errors.setdefault(429, "over RATE_LIMIT or RATE_LIMIT_PER_ADDRESS; Retry-After says when to try again")
    elif endpoint not in UNCOUNTED:
        errors.setdefault(429, "over RATE_LIMIT_PER_ADDRESS; Retry-After says when to try again")
    errors.setdefault(500, "an unexpected error (logged); nothing of a refused upload is kept")
    for status in sorted(errors):
        responses[str(status)] = _problem(errors[status], refs)
    operation["responses"] = responses
    return operation


def _parameter(name: str, where: str, param: Param, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or param.required, "schema": param.schema,
            "description": param.description}


def _documents(rule_path: str, view: Callable[..., Any], api_prefix: str) -> bool:
    if getattr(view, "openapi_hidden", False):
        return False
    return rule_path.startswith(api_prefix) or hasattr(view, "openapi")


def _service_rules(service: UploadService) -> list[tuple[str, Callable[..., Any], str, list[str], list[str]]]:
    """(endpoint, view, path, parameters, methods) of every documented route of ``service``."""
    app, found = service.app, []
    assert app is not None, "call init_app first"
    for rule in app.url_map.iter_rules():
        blueprint, _, endpoint = rule.endpoint.rpartition(".")
        view = app.view_functions[rule.endpoint]
        if blueprint == service.name and _documents(rule.rule, view, f"{service.url_prefix}/api/"):
            path, params = openapi_path(rule.rule)
            found.append((endpoint, view, path, params, _declared_methods(rule.methods or set())))
    return found


def _declared_methods(methods: set[str]) -> list[str]:
    """A rule's methods without those werkzeug adds (HEAD beside GET, OPTIONS beside anything)."""
    declared = set(methods)
    if "GET" in declared:
        declared.discard("HEAD")
    if declared - {"OPTIONS"}:
        declared.discard("OPTIONS")
    return sorted(declared)


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _path_names(rules: list[tuple[str, Any, str, list[str], list[str]]]) -> dict[str, list[str]]:
    """OpenAPI treats ``/files/{a}`` and ``/files/{b}`` as one path: one name per position (``a_or_b``)."""
    seen: dict[str, list[list[str]]] = {}
    for _, _, path, params, _ in rules:
        seen.setdefault(_shape(path), []).append(params)
    return {shape: ["_or_".join(dict.fromkeys(names)) for names in zip(*lists, strict=True)]
            for shape, lists in seen.items()}


def build_document(service: UploadService) -> dict[str, Any]:
    """The OpenAPI document of ``service`` from the app's URL map, as it stands now."""
    assert service.app is not None, "call init_app first"
    refs = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    rules = _service_rules(service)
    shared_names = _path_names(rules)
    for endpoint, view, path, params, methods in rules:
        names = shared_names[_shape(path)]
        key = _shape(path).format(*("{" + name + "}" for name in names))
        for method in methods:
            operation_id = endpoint if len(methods) == 1 else f"{endpoint}_{method.lower()}"
            paths.setdefault(key, {})[method.lower()] = _operation(service, endpoint, operation_id, view, method,
                                                                   params, names, refs)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"upload-service ({service.name})", "version": _version(),
                 "description": "Upload, list, download and delete files. Errors are RFC 9457 problem details."},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(refs.components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a GitHub token or a token from API_TOKENS"},
                "session": {"type": "apiKey", "in": "cookie", "name": service.app.config["SESSION_COOKIE_NAME"],
                            "description": "the browser session; state changes need X-CSRF-Token"},
            },
        },
    }


def _version() -> str:
    try:
        return metadata.version("upload-service")
    except metadata.PackageNotFoundError:
        return "0"


def register_openapi_routes(bp: Blueprint, service: UploadService) -> None:
    document: dict[str, Any] = {}

    def current() -> dict[str, Any]:
        if not document:  # every route, plugins' included, is registered before the first request
            document.update(build_document(service))
        return document

    @bp.route("/api/openapi.json", methods=["GET"], endpoint="openapi")
    @documented(public=True, replies={200: Reply("this document", {"type": "object"})})
    async def openapi() -> Any:
        """The OpenAPI 3.1 description of this API."""
        return json_response(current())

    @bp.route("/api/docs", methods=["GET"], endpoint="api_docs")
    @documented(public=True, replies={200: Reply("an HTML page", {"type": "string"}, "text/html")})
    async def api_docs() -> Any:
        """This API's documentation as a plain HTML page, rendered from the OpenAPI document."""
        return await render_template("upload_service/api_docs.html", doc=current(), service=service,
                                     url=service.url)
