"""Every kind of answer carries the security headers, and no uploaded file is ever rendered inline unless it
is a raster image whose own bytes say so."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from upload_service.serving import sniff_image

from .browser import dev_client, dev_settings
from .conftest import server_starter
from .servers import Server
from .tus import TUS, create, patch


@pytest.fixture(scope="module")
def ui_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = server_starter(request, tmp_path_factory, "local")(**dev_settings())
    yield running
    running.stop()


def policy(answer: httpx.Response) -> dict[str, str]:
    found = answer.headers.get("content-security-policy")
    assert found, f"{answer.request.method} {answer.request.url.path} ({answer.status_code}) has no CSP"
    return dict((part.strip().split(" ", 1) + [""])[:2] for part in found.split(";") if part.strip())


def check_headers(answer: httpx.Response) -> dict[str, str]:
    """The headers of every answer; HTML pages get the UI's policy, anything else one that allows nothing."""
    where = f"{answer.request.method} {answer.request.url.path} ({answer.status_code})"
    directives = policy(answer)
    assert directives["frame-ancestors"] == "'none'", where
    assert answer.headers.get("x-content-type-options") == "nosniff", where
    assert answer.headers.get("referrer-policy") == "same-origin", where
    assert answer.headers.get("x-frame-options") == "DENY", where
    if directives["default-src"] != "'none'":
        assert answer.headers["content-type"].startswith("text/html"), where
        scripts = directives["script-src"].split()  # 'self', and htmx's pinned CDN only where it is not bundled
        assert scripts[0] == "'self'" and not [source for source in scripts if source.startswith("'unsafe")], where
        assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'", where
    return directives


def image(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 10, 10)).save(out, format=kind)
    return out.getvalue()


def every_kind_of_answer(server: Server) -> dict[str, tuple[int, httpx.Response]]:
    """One answer of each kind the service gives, by name, with the status it must have."""
    client, anonymous = dev_client(server), httpx.Client(base_url=server.url, timeout=30)
    server.clients.append(anonymous)
    stored = client.put("/api/files/notes.txt", content=b"some text").json()
    tus_url = create(client, 3)
    return {
        "sign-in page": (200, anonymous.get("/")),
        "upload page": (200, client.get("/")),
        "file rows fragment": (200, client.get("/ui/files")),
        "sign-out page": (200, client.get("/logout")),
        "API docs page": (200, anonymous.get("/api/docs")),
        "OpenAPI document": (200, anonymous.get("/api/openapi.json")),
        "API JSON": (200, client.get("/api/files")),
        "API JSON created": (201, client.put("/api/files/more.txt", content=b"more")),
        "problem 401": (401, anonymous.get("/api/files")),
        "problem 400": (400, client.get("/api/files?limit=0")),
        "problem 404 of a file": (404, client.get("/api/files/00000000000000000000")),
        "problem 404 of an unknown API path": (404, client.get("/api/no/such/route")),
        "problem 405": (405, client.delete("/api/files")),
        "404 page": (404, anonymous.get("/no/such/page")),
        "download": (200, client.get(stored["url"])),
        "download HEAD": (200, client.head(stored["url"])),
        "download range": (206, client.get(stored["url"], headers={"Range": "bytes=0-3"})),
        "download 304": (304, client.get(stored["url"], headers={"If-None-Match": f'"{stored["sha256"]}"'})),
        "download 416": (416, client.get(stored["url"], headers={"Range": "bytes=100-200"})),
        "stylesheet": (200, anonymous.get("/static/css/app.css")),
        "script": (200, anonymous.get("/static/js/app.js")),
        "icon": (200, anonymous.get("/static/favicon.svg")),
        "static 404": (404, anonymous.get("/static/no-such-file.js")),
        "tus OPTIONS": (204, anonymous.options("/api/tus/")),
        "tus created": (201, client.post("/api/tus/", headers={**TUS, "Upload-Length": "1"})),
        "tus HEAD": (200, client.head(tus_url, headers=TUS)),
        "tus PATCH": (204, patch(client, tus_url, 0, b"abc")),
        "tus 412": (412, client.post("/api/tus/", headers={"Upload-Length": "1"})),
        "tus 409": (409, patch(client, tus_url, 0, b"abc")),
        "health": (200, anonymous.get("/healthz")),
        "readiness": (200, anonymous.get("/readyz")),
        "metrics": (200, anonymous.get("/metrics")),
    }


def test_every_kind_of_answer_carries_the_security_headers(ui_server: Server) -> None:
    answers = every_kind_of_answer(ui_server)
    for name, (status, answer) in answers.items():
        assert answer.status_code == status, (name, answer.status_code)
        check_headers(answer)
    assert answers["upload page"][1].headers["content-type"].startswith("text/html")
    assert answers["problem 404 of an unknown API path"][1].headers["content-type"] == "application/problem+json"
    for name in ("download", "download HEAD", "download range", "download 304"):
        assert "sandbox" in policy(answers[name][1]), name


@pytest.mark.parametrize(("name", "claimed", "data"), [
    ("x.html", "text/html", b"<script>alert(document.domain)</script>"),
    ("x.htm", "application/xhtml+xml", b"<html xmlns='http://www.w3.org/1999/xhtml'><script>1</script></html>"),
    ("x.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
    ("fake.png", "image/png", b"<html><script>alert(1)</script></html>"),  # claims an image, is HTML
    ("fake.gif", "image/gif", b"GIF8<script>alert(1)</script>"),
    ("real.bin", "application/octet-stream", None),  # a real PNG stored as bytes (no content-type policy)
    ("empty.png", "image/png", b""),
    ("x.js", "text/javascript", b"alert(1)"),
    ("x.xml", "text/xml", b"<?xml version='1.0'?><x/>"),
])
def test_anything_but_a_sniffed_raster_image_is_an_attachment(ui_server: Server, name: str, claimed: str,
                                                               data: bytes | None) -> None:
    client = dev_client(ui_server)
    stored = client.put(f"/api/files/{name}", content=image("PNG") if data is None else data,
                        headers={"Content-Type": claimed}).json()
    for answer in (client.get(stored["url"]), client.head(stored["url"])):
        assert answer.status_code == 200
        assert answer.headers["content-disposition"].startswith("attachment;"), (name, answer.headers)
        assert "sandbox" in policy(answer) and check_headers(answer)["default-src"] == "'none'"
        assert answer.headers["content-type"].split(";")[0] not in ("text/html", "application/xhtml+xml",
                                                                     "image/svg+xml", "text/javascript")


@pytest.mark.parametrize(("kind", "media"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"),
                                             ("WEBP", "image/webp")])
def test_a_raster_image_whose_bytes_match_is_shown_inline(ui_server: Server, kind: str, media: str) -> None:
    client, data = dev_client(ui_server), image(kind)
    assert sniff_image(data[:12]) == media
    stored = client.put(f"/api/files/picture.{kind.lower()}", content=data, headers={"Content-Type": media}).json()
    answer = client.get(stored["url"])
    assert answer.content == data
    assert answer.headers["content-type"] == media
    assert answer.headers["content-disposition"].startswith("inline;")
    assert "sandbox" in policy(answer)
    check_headers(answer)


def test_an_image_claiming_another_raster_type_is_served_as_what_it_is(ui_server: Server) -> None:
    client = dev_client(ui_server)
    stored = client.put("/api/files/photo.png", content=image("JPEG"), headers={"Content-Type": "image/png"}).json()
    answer = client.get(stored["url"])
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.headers["content-disposition"].startswith("inline;")


def test_an_uploaded_html_page_is_saved_not_rendered_whichever_way_it_arrives(ui_server: Server) -> None:
    client, page = dev_client(ui_server), b"<!doctype html><h1>phish</h1><script>alert(1)</script>"
    raw = client.put("/api/files/x.html", content=page, headers={"Content-Type": "text/html"}).json()
    form = client.post("/api/upload", files={"file": ("x.html", page, "text/html")}).json()["files"][0]
    location = create(client, len(page), Upload_Metadata="filename eC5odG1s,filetype dGV4dC9odG1s")
    tus_id = patch(client, location, 0, page).headers["Upload-File-Id"]
    for url in (raw["url"], form["url"], f"/api/files/{tus_id}/content"):
        answer = client.get(url)
        assert answer.content == page
        assert answer.headers["content-disposition"].startswith('attachment; filename="x.html"')
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in policy(answer)
