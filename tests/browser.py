"""Real Chromium for the UI tests: Debian's ``/usr/bin/chromium`` driven by Playwright (no downloaded browsers).

``ui_server`` starts ``upload-service`` in dev mode; ``signed_in(server)`` opens a page that clicked the dev
sign-in button; ``snap`` saves screenshots under ``test-artifacts/screenshots/`` for a person to look at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from .servers import Server, tls

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
DEV_TOKEN = "dev-token-for-browser-tests-0123"
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
VENDORED_HTMX = ROOT / "upload_service" / "static" / "vendor" / "htmx.min.js"
expect.set_options(timeout=15_000)  # the machine is shared: give a busy browser time before failing


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module: Playwright's sync API holds an event loop while it runs, which async
    tests in later modules must not find."""
    if not VENDORED_HTMX.is_file():
        pytest.fail("the bundled htmx is missing: run scripts/build-assets first")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """New browser contexts (own cookies), closed after the test."""
    opened: list[BrowserContext] = []

    def open_context(**options) -> BrowserContext:
        options.setdefault("viewport", {"width": 1280, "height": 900})
        context = browser.new_context(**options)
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        context.close()


def dev_settings(**settings: str) -> dict[str, str]:
    return {"dev": "1", "dev_token": DEV_TOKEN, **settings}


def dev_client(server: Server) -> httpx.Client:
    """An API client acting as the same user as the browser's dev sign-in."""
    client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {DEV_TOKEN}"}, timeout=30,
                          verify=tls())
    server.clients.append(client)
    return client


def sign_in(page: Page, server: Server) -> Page:
    page.goto(server.url + "/")
    page.get_by_role("button", name="Sign in as the local developer").click()
    page.wait_for_selector("#file-rows")
    page.wait_for_load_state("load")  # the scripts have run: the page is ready for input
    return page


def snap(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def throttle_uploads(page: Page, bytes_per_second: int) -> None:
    """Slow the page's uploads down (Chromium's network emulation), so progress and cancel can be seen."""
    session = page.context.new_cdp_session(page)
    session.send("Network.enable")
    session.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second,
    })


def drop_files(page: Page, selector: str, files: dict[str, str]) -> None:
    """Drop files on an element the way a browser does: a DataTransfer carried by drag events."""
    page.evaluate(
        """([selector, files]) => {
            const zone = document.querySelector(selector);
            const data = new DataTransfer();
            for (const [name, text] of Object.entries(files)) {
                data.items.add(new File([text], name, {type: "text/plain"}));
            }
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
            }
        }""",
        [selector, files],
    )
