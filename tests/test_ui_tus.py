"""Large files picked on the page go by tus (tus-js-client, bundled by scripts/build-assets), in real Chromium:
chunked PATCHes to ``/api/tus/``, and a file picked again after the page was reloaded mid-upload resumes from
the server's offset instead of starting over."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from playwright.sync_api import Page, Request, Route, expect

from .browser import dev_client, dev_settings, sign_in, throttle_uploads
from .servers import Server

MiB = 1024 * 1024
CHUNK = 8 * MiB  # the UI's tus chunk size
TUS_JS = Path(__file__).resolve().parent.parent / "upload_service" / "static" / "vendor" / "tus.min.js"


def tus_requests(page: Page) -> list[tuple[str, str, str | None]]:
    """(method, url, Upload-Offset) of every request the page sends to the tus endpoint, in order."""
    seen: list[tuple[str, str, str | None]] = []

    def record(request: Request) -> None:
        if "/api/tus/" in request.url:
            seen.append((request.method, request.url, request.headers.get("upload-offset")))

    page.on("request", record)
    return seen


def stored(server: Server, name: str) -> tuple[dict, str]:
    """The file's description and the sha256 of its content as downloaded, through the API."""
    client = dev_client(server)
    found = [f for f in client.get("/api/files").json()["files"] if f["filename"] == name]
    assert len(found) == 1, found
    return found[0], hashlib.sha256(client.get(found[0]["url"]).content).hexdigest()


def test_a_file_above_the_threshold_uploads_by_tus_and_appears(contexts, make_server, tmp_path):
    assert TUS_JS.is_file(), "run scripts/build-assets first"
    server = make_server(**dev_settings(ui_tus_threshold="1MiB"))
    page = sign_in(contexts().new_page(), server)
    requests = tus_requests(page)
    small, big = os.urandom(MiB), os.urandom(CHUNK + 3 * MiB + 17)
    page.set_input_files("#upload-input", files=[
        {"name": "tus-big.bin", "mimeType": "application/octet-stream", "buffer": big},
        {"name": "at-threshold.bin", "mimeType": "application/octet-stream", "buffer": small},
    ])
    expect(page.locator("#upload-queue .upload[data-state=done]")).to_have_count(2)
    for upload in page.locator("#upload-queue .upload").all():
        expect(upload.locator(".upload-percent")).to_have_text("100 %")
    big_row = page.locator("#file-rows tr.file-row", has=page.get_by_text("tus-big.bin", exact=True))
    expect(big_row).to_contain_text("11.5 MB")

    methods = [method for method, _, _ in requests]
    assert methods.count("POST") == 1 and methods.count("PATCH") == 2, requests  # one upload, two chunks
    assert [offset for method, _, offset in requests if method == "PATCH"] == ["0", str(CHUNK)]
    described, downloaded = stored(server, "tus-big.bin")
    assert described["size"] == len(big)
    assert described["sha256"] == downloaded == hashlib.sha256(big).hexdigest()
    described, _ = stored(server, "at-threshold.bin")  # not above the threshold: one raw PUT, no tus
    assert described["sha256"] == hashlib.sha256(small).hexdigest()
    assert page.evaluate("localStorage.length") == 0  # a finished upload leaves nothing to resume


def test_a_reload_mid_upload_resumes_from_the_servers_offset(contexts, make_server, tmp_path):
    server = make_server(**dev_settings(ui_tus_threshold="1MiB"))
    page = sign_in(contexts().new_page(), server)
    content = os.urandom(CHUNK + 2 * MiB + 5)
    path = tmp_path / "resumed.bin"  # a file on disk: the same name, size and mtime when picked again
    path.write_bytes(content)
    held: list[Route] = []

    def hold_second_chunk(route: Route) -> None:
        """The first chunk goes through; the second never gets an answer (a network that died)."""
        if route.request.method == "PATCH" and route.request.headers.get("upload-offset") != "0":
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/tus/**", hold_second_chunk)
    before = tus_requests(page)
    page.set_input_files("#upload-input", str(path))
    for _ in range(300):  # route handlers run while the page is waited on
        if held:
            break
        page.wait_for_timeout(100)
    assert len(held) == 1, "the second chunk was not sent"
    expect(page.locator("#upload-queue .upload-percent")).to_have_text("79 %")  # the first chunk, of 10 MiB
    assert page.evaluate("localStorage.length") == 1  # the upload URL, kept for resuming

    page.reload()  # the held chunk dies with the page
    page.wait_for_selector("#file-rows")
    page.wait_for_load_state("load")
    page.unroute("**/api/tus/**")
    upload_url = next(url for method, url, _ in before if method == "PATCH")
    head = dev_client(server).head(upload_url, headers={"Tus-Resumable": "1.0.0"})
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(CHUNK)
    requests = tus_requests(page)
    page.set_input_files("#upload-input", str(path))
    expect(page.locator("#upload-queue .upload[data-state=done]")).to_have_count(1)
    expect(page.locator("#upload-queue .upload-percent")).to_have_text("100 %")

    methods = [method for method, _, _ in requests]
    assert "POST" not in methods, requests  # no new upload: the stored one was resumed
    patches = [offset for method, _, offset in requests if method == "PATCH"]
    assert patches == [str(CHUNK)], requests  # only the missing bytes were sent
    described, downloaded = stored(server, "resumed.bin")
    assert described["size"] == len(content)
    assert described["sha256"] == downloaded == hashlib.sha256(content).hexdigest()


def test_cancel_deletes_the_tus_upload_and_a_refusal_shows_the_servers_reason(contexts, make_server):
    server = make_server(**dev_settings(ui_tus_threshold="1MiB", max_upload_size="10MiB"))
    page = sign_in(contexts().new_page(), server)
    requests = tus_requests(page)
    throttle_uploads(page, 512 * 1024)
    page.set_input_files("#upload-input", files=[
        {"name": "cancelled.bin", "mimeType": "application/octet-stream", "buffer": os.urandom(4 * MiB)},
    ])
    upload = page.locator("#upload-queue .upload").first
    expect(upload.locator(".upload-percent")).to_have_text(re.compile(r"^[1-9]\d? %$"))
    upload.get_by_role("button", name="Cancel upload of cancelled.bin").click()
    expect(upload.locator(".upload-state")).to_have_text("Cancelled")
    page.wait_for_function("() => localStorage.length === 0")  # nothing left to resume
    upload_url = next(url for method, url, _ in requests if method == "PATCH")
    assert ("DELETE", upload_url, None) in requests
    assert dev_client(server).head(upload_url, headers={"Tus-Resumable": "1.0.0"}).status_code == 404

    page.set_input_files("#upload-input", files=[
        {"name": "too-big.bin", "mimeType": "application/octet-stream", "buffer": os.urandom(11 * MiB)},
    ])
    refused = page.locator("#upload-queue .upload").first
    expect(refused.locator(".upload-state")).to_have_text("Refused")
    expect(refused.locator(".upload-error")).to_have_text(f"the upload is larger than the limit of {10 * MiB} bytes")
    assert [method for method, url, _ in requests[-1:]] == ["POST"]  # refused at creation, by tus
    assert dev_client(server).get("/api/files").json()["files"] == []


def test_without_the_tus_plugin_large_files_go_by_raw_put(contexts, make_server):
    server = make_server(**dev_settings(ui_tus_threshold="1MiB", disabled_plugins="tus"))
    page = sign_in(contexts().new_page(), server)
    assert page.locator("body").get_attribute("data-tus-url") is None
    assert page.locator("script[src*='tus.min.js']").count() == 0
    requests = tus_requests(page)
    content = os.urandom(2 * MiB)
    page.set_input_files("#upload-input", files=[
        {"name": "plain.bin", "mimeType": "application/octet-stream", "buffer": content},
    ])
    expect(page.locator("#upload-queue .upload[data-state=done]")).to_have_count(1)
    assert requests == []
    described, downloaded = stored(server, "plain.bin")
    assert described["sha256"] == downloaded == hashlib.sha256(content).hexdigest()
