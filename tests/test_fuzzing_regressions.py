"""What the API fuzzing (tests/test_fuzzing.py) found, each pinned by a plain request against a real server."""

from __future__ import annotations

import base64
import re

import httpx
import pytest

from upload_service.files import FILE_ID_PATTERN, new_file_id

from .servers import Server
from .tus import TUS, create


@pytest.fixture(scope="module")
def document(server: Server) -> dict:
    return httpx.get(server.url + "/api/openapi.json").json()


def parameters(document: dict, path: str, method: str) -> dict[tuple[str, str], dict]:
    return {(p["in"], p["name"]): p for p in document["paths"][path][method]["parameters"]}


def test_a_json_item_whose_content_type_is_not_a_string_is_a_400_not_a_500(server: Server) -> None:
    client = server.client("alice")
    for claimed in (1.5, ["text/plain"], {"a": 1}, True):
        item = {"filename": "typed.txt", "content": base64.b64encode(b"x").decode(), "content_type": claimed}
        answer = client.post("/api/upload", json=[item])
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "content_type" in answer.json()["detail"]
    assert client.post("/api/upload", json=[{"filename": "untyped.txt", "content": "eA==",
                                             "content_type": None}]).status_code == 201


def test_a_raw_upload_whose_name_holds_a_newline_is_stored_not_refused_with_405(server: Server) -> None:
    client = server.client("alice")
    answer = client.put("/api/files/line%0Abreak%0D%0A.txt", content=b"nl")
    assert answer.status_code == 201, answer.text
    assert answer.json()["filename"] == "linebreak.txt"  # control characters never reach the display name
    nested = client.put("/api/files/dir%0A/inner.txt", content=b"nl")
    assert nested.status_code == 201 and nested.json()["filename"] == "inner.txt"


def test_the_documented_id_patterns_accept_the_ids_the_service_makes(server: Server, document: dict) -> None:
    file_id = parameters(document, "/api/files/{file_id}/content", "get")[("path", "file_id")]
    assert file_id["schema"]["pattern"] == FILE_ID_PATTERN
    assert all(re.fullmatch(FILE_ID_PATTERN, new_file_id()) for _ in range(100))
    stored = server.client("alice").put("/api/files/id.txt", content=b"i").json()
    assert re.fullmatch(FILE_ID_PATTERN, stored["id"])

    upload_id = parameters(document, "/api/tus/{upload_id}", "patch")[("path", "upload_id")]
    location = create(server.client("alice"), 1)
    assert re.fullmatch(upload_id["schema"]["pattern"], location.rsplit("/", 1)[-1])


def test_tus_operations_declare_the_headers_the_protocol_requires(document: dict) -> None:
    patch = parameters(document, "/api/tus/{upload_id}", "patch")
    assert patch[("header", "Tus-Resumable")]["required"] is True
    assert patch[("header", "Tus-Resumable")]["schema"]["enum"] == [TUS["Tus-Resumable"]]
    assert patch[("header", "Upload-Offset")]["required"] is True
    assert patch[("header", "Upload-Offset")]["schema"] == {"type": "integer", "minimum": 0}
    for method in ("head", "delete"):
        assert parameters(document, "/api/tus/{upload_id}", method)[("header", "Tus-Resumable")]["required"]
    override = parameters(document, "/api/tus/{upload_id}", "post")[("header", "X-HTTP-Method-Override")]
    assert override["required"] and override["schema"]["enum"] == ["PATCH", "DELETE"]
    creation = parameters(document, "/api/tus/", "post")
    assert {"Upload-Length", "Upload-Defer-Length", "Upload-Metadata", "Upload-Concat"} <= {
        name for where, name in creation if where == "header"}


def test_the_documented_bounds_are_the_ones_the_service_enforces(server: Server, document: dict) -> None:
    limit = parameters(document, "/api/files", "get")[("query", "limit")]["schema"]
    client = server.client("alice")
    assert client.get("/api/files", params={"limit": limit["minimum"]}).status_code == 200
    assert client.get("/api/files", params={"limit": limit["maximum"]}).status_code == 200
    assert client.get("/api/files", params={"limit": limit["minimum"] - 1}).status_code == 400
    assert client.get("/api/files", params={"limit": limit["maximum"] + 1}).status_code == 400

    body = document["components"]["schemas"]["Base64Upload"]
    assert body["anyOf"][0]["minItems"] == 1
    assert client.post("/api/upload", json=[]).status_code == 400
    assert document["components"]["schemas"]["PersistRequest"]["properties"]["tokens"]["items"]["minLength"] == 1
    assert client.post("/api/persist", json={"tokens": [""]}).status_code == 400


def test_a_download_is_documented_with_the_file_s_own_type(server: Server, document: dict) -> None:
    """The document said application/octet-stream, but a download has the file's type (image/png, text/plain)."""
    answers = document["paths"]["/api/files/{file_id}/content"]["get"]["responses"]
    assert list(answers["200"]["content"]) == list(answers["206"]["content"]) == ["*/*"]
    stored = server.client("alice").put("/api/files/typed.txt", content=b"t", headers={"Content-Type": "text/plain"})
    assert server.client("alice").get(stored.json()["url"]).headers["content-type"].startswith("text/plain")
