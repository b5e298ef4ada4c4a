"""The OpenAPI document: valid, complete (every API route of the app is in it), and true (real answers of a
running server have the statuses and shapes it documents)."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from upload_service.api.openapi import _declared_methods
from upload_service.app import create_app
from upload_service.settings import Settings

from .servers import Server


@pytest.fixture(scope="module")
def document(server: Server) -> dict[str, Any]:
    answer = httpx.get(server.url + "/api/openapi.json")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    return answer.json()


def operation_for(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, operations in document["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return operations[method.lower()]
    raise AssertionError(f"{method} {path} is not in the document")


def check_documented(document: dict[str, Any], answer: httpx.Response) -> None:
    """The answer's status is documented for its operation, and its JSON body matches the documented schema."""
    request = answer.request
    operation = operation_for(document, request.method, request.url.path)
    documented = operation["responses"].get(str(answer.status_code))
    assert documented is not None, f"{request.method} {request.url.path} answered {answer.status_code}, undocumented"
    media = answer.headers.get("content-type", "").split(";")[0]
    if media in ("application/json", "application/problem+json"):
        schema = documented["content"][media]["schema"]
        validator = Draft202012Validator({**schema, "components": document["components"]})
        errors = [error.message for error in validator.iter_errors(answer.json())]
        assert not errors, (request.method, request.url.path, errors)


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert {"File", "FileList", "FilePage", "Problem", "PersistRequest", "Base64Upload"} <= set(
        document["components"]["schemas"])


def test_every_api_route_is_declared_and_in_the_document(tmp_path, document: dict[str, Any]) -> None:
    app = create_app(Settings(secret_key="s" * 32, upload_dir=tmp_path))
    documented = {(method, operation["x-endpoint"])
                  for operations in document["paths"].values() for method, operation in operations.items()}
    routes = [rule for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/")
              and not getattr(app.view_functions[rule.endpoint], "openapi_hidden", False)]
    assert len(routes) >= 9
    hidden = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint not in {r.endpoint for r in routes}
              and rule.rule.startswith("/api/")}
    assert hidden == {"upload_service.api_fallback"}  # only the catch-all that answers unknown API URLs
    for rule in routes:
        view = app.view_functions[rule.endpoint]
        assert hasattr(view, "openapi"), f"{rule.rule} has no @documented declaration"
        for method in _declared_methods(rule.methods):
            assert (method.lower(), rule.endpoint.split(".")[-1]) in documented, (method, rule.rule)


def test_real_answers_match_the_document(server: Server, document: dict[str, Any]) -> None:
    client = server.client("alice")
    answers = [
        client.post("/api/upload", json=[{"filename": "a.txt", "content": base64.b64encode(b"abc").decode()}]),
        client.post("/api/upload", files={"file": ("b.txt", b"bbb")}),
        client.put("/api/upload_temporary", files={"file": ("t.txt", b"ttt")}),
        client.put("/api/files/raw.bin", content=b"raw bytes"),
        client.post("/api/upload", json=[{"filename": "x", "content": "%%%"}]),
        client.post("/api/upload", content=b"text", headers={"Content-Type": "text/plain"}),
        client.get("/api/files"),
        client.get("/api/files?temporary=1"),
        client.get("/api/files?limit=0"),
        client.get("/api/files/nosuchfile"),
        client.delete("/api/files/nosuchfile"),
        client.post("/api/persist", content=b"{not json", headers={"Content-Type": "application/json"}),
        httpx.get(server.url + "/api/files"),
        httpx.get(server.url + "/healthz"),
        httpx.get(server.url + "/readyz"),
    ]
    stored = answers[3].json()
    token = answers[2].json()["files"][0]["token"]
    answers += [
        client.get(f"/api/files/{stored['id']}"),
        client.get(stored["url"], headers={"Range": "bytes=0-2"}),
        client.get(stored["url"], headers={"Range": "bytes=100-200"}),
        client.get(stored["url"], headers={"If-None-Match": f'"{stored["sha256"]}"'}),
        client.post("/api/persist", json={"tokens": [token], "metadata": {"k": "v"}}),
        client.post("/api/persist", json={"tokens": [token]}),
        client.delete(f"/api/files/{stored['id']}"),
    ]
    tus = {"Tus-Resumable": "1.0.0"}
    created = client.post("/api/tus/", headers={**tus, "Upload-Length": "3"})
    location = created.headers["Location"]
    answers += [
        created,
        client.patch(location, content=b"abc",
                     headers={**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}),
        client.head(location, headers=tus),
        client.post("/api/tus/", headers={"Upload-Length": "3"}),
        client.options("/api/tus/"),
    ]
    statuses = sorted({answer.status_code for answer in answers})
    assert statuses == [200, 201, 204, 206, 304, 400, 401, 404, 409, 412, 415, 416]
    for answer in answers:
        check_documented(document, answer)


def test_docs_page_lists_every_operation(server: Server, document: dict[str, Any]) -> None:
    page = httpx.get(server.url + "/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert f'id="{operation["operationId"]}"' in page.text
            assert f"<code>{method.upper()} {path}</code>" in page.text
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name}"' in page.text  # rendered on the server: no JavaScript renderer needed
