"""tus-js-client (from npm, pinned in package.json) in headless Chromium against a real server: a chunked
upload, a resume from a new ``tus.Upload`` after an abort, and automatic recovery from a connection cut
mid-PATCH by a proxy. Needs ``npm ci`` (scripts/build-assets runs it) and Debian's chromium."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from .servers import TOKENS, Server
from .tcp_proxy import BreakingProxy
from .tus import offset_of, tus_backend  # noqa: F401 (tus_backend: autouse fixture)

ROOT = Path(__file__).resolve().parent.parent
TUS_JS = ROOT / "node_modules" / "tus-js-client" / "dist" / "tus.min.js"
CHROMIUM = "/usr/bin/chromium"
MiB = 1024 * 1024
pytestmark = pytest.mark.browser  # Chromium (this module's own, with tus-js-client injected)

UPLOAD = """async ({token, size, chunkSize, uploadUrl, stopAfter, retryDelays}) => {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 10)) & 255;
  return await new Promise((resolve, reject) => {
    const upload = new tus.Upload(new Blob([bytes]), {
      endpoint: "/api/tus/", uploadUrl, chunkSize, retryDelays,
      headers: {Authorization: "Bearer " + token},
      metadata: {filename: "browser.bin", filetype: "application/octet-stream"},
      onChunkComplete(chunk, sent) {
        if (stopAfter && sent >= stopAfter) upload.abort().then(() => resolve({url: upload.url, sent}));
      },
      onSuccess(payload) {
        resolve({url: upload.url, fileId: payload.lastResponse.getHeader("Upload-File-Id")});
      },
      onError(error) { reject(String(error)); },
    });
    upload.start();
  });
}"""


def expected(size: int) -> bytes:
    return bytes((i * 31 + (i >> 10)) & 255 for i in range(size))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not TUS_JS.is_file():
        pytest.fail("tus-js-client is missing: run `npm ci` (or scripts/build-assets) first")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def page_at(browser: Browser, origin: str) -> Page:
    """A page on the service's origin (its health check) with tus-js-client injected: every answer carries a
    CSP that allows no inline script, so the injection bypasses it (the UI's own tus use is test_ui_tus.py)."""
    page = browser.new_page(bypass_csp=True)
    page.goto(origin + "/healthz")
    page.add_script_tag(path=str(TUS_JS))
    return page


def upload(page: Page, size: int, **options) -> dict:
    options = {"token": TOKENS["alice"], "size": size, "chunkSize": MiB, "uploadUrl": None, "stopAfter": 0,
               "retryDelays": [0, 200, 1000], **options}
    return page.evaluate(UPLOAD, options)


def server_file(server: Server, file_id: str) -> dict:
    client = server.client()
    described = client.get(f"/api/files/{file_id}").json()
    described["downloaded_sha256"] = hashlib.sha256(client.get(described["url"]).content).hexdigest()
    return described


def test_tus_js_client_uploads_in_chunks(make_server, chromium: Browser) -> None:
    server = make_server()
    result = upload(page_at(chromium, server.url), 3 * MiB + 100)
    described = server_file(server, result["fileId"])
    assert described["filename"] == "browser.bin" and described["size"] == 3 * MiB + 100
    assert described["sha256"] == described["downloaded_sha256"] == hashlib.sha256(expected(3 * MiB + 100)).hexdigest()


def test_tus_js_client_resumes_with_a_new_upload_object(make_server, chromium: Browser) -> None:
    server = make_server()
    page = page_at(chromium, server.url)
    first = upload(page, 3 * MiB, stopAfter=MiB)
    assert offset_of(server.client(), first["url"]) == MiB
    page.reload()
    page.add_script_tag(path=str(TUS_JS))
    resumed = upload(page, 3 * MiB, uploadUrl=first["url"])
    assert resumed["url"] == first["url"]
    assert server_file(server, resumed["fileId"])["sha256"] == hashlib.sha256(expected(3 * MiB)).hexdigest()


def test_tus_js_client_recovers_from_a_cut_connection(make_server, chromium: Browser) -> None:
    server = make_server()
    port = int(server.url.rsplit(":", 1)[1])
    with BreakingProxy(port, after=MiB + MiB // 2, mode="cut") as proxy:
        result = upload(page_at(chromium, proxy.url), 4 * MiB, chunkSize=2 * MiB)
        assert proxy.broken.is_set()
    described = server_file(server, result["fileId"])
    assert described["sha256"] == described["downloaded_sha256"] == hashlib.sha256(expected(4 * MiB)).hexdigest()
