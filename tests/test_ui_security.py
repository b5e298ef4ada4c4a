"""What the page lets through: CSP, CSRF on every change, escaped names, no inline code, no outside requests,
and the plain form post that works without JavaScript."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from .browser import dev_client, dev_settings, sign_in, snap

XSS_NAME = "<img src=x onerror=alert(1)>.txt"
WATCH_CSP = """
    window.cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective));
"""


@pytest.fixture(scope="module")
def ui_server(request, tmp_path_factory):
    from .conftest import server_starter

    running = server_starter(request, tmp_path_factory, "local")(**dev_settings())
    yield running
    running.stop()


def test_html_answers_carry_a_csp_without_inline_scripts_and_api_answers_a_locked_down_one(ui_server):
    client = dev_client(ui_server)
    for path in ["/", "/ui/files", "/logout"]:
        answer = client.get(path)
        assert answer.headers["content-type"].startswith("text/html")
        policy = dict(part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";"))
        assert policy["script-src"] == "'self'"
        assert policy["style-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'"
        assert policy["form-action"] == "'self'"  # the dev sign-in posts back to this origin
        assert answer.headers["x-content-type-options"] == "nosniff"
    api = client.get("/api/files").headers["content-security-policy"]  # JSON gets a policy that allows nothing
    assert api.startswith("default-src 'none'") and "frame-ancestors 'none'" in api


def test_a_whole_session_causes_no_csp_violation_no_inline_code_and_no_outside_request(contexts, ui_server):
    context = contexts()
    context.add_init_script(WATCH_CSP)
    requests, console = [], []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.on("console", lambda message: console.append(message.text))
    sign_in(page, ui_server)
    page.set_input_files("#upload-input", files=[{"name": "csp.txt", "mimeType": "text/plain", "buffer": b"c"}])
    row = page.locator("#file-rows tr.file-row", has_text="csp.txt")
    expect(row).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete csp.txt").click()
    expect(row).to_have_count(0)

    assert page.evaluate("window.cspViolations") == []
    assert not [text for text in console if "Content Security Policy" in text]
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    inline_handlers = page.evaluate(
        "[...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
        ".filter(name => name.startsWith('on'))")
    assert inline_handlers == []
    assert page.evaluate("typeof htmx") == "object"
    assert requests and all(url.startswith(ui_server.url + "/") for url in requests)


def test_a_hostile_filename_is_shown_as_text(contexts, ui_server):
    context = contexts()
    page = sign_in(context.new_page(), ui_server)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.set_input_files("#upload-input", files=[{"name": XSS_NAME, "mimeType": "text/plain", "buffer": b"x"}])
    expect(page.locator("#upload-queue .upload-name")).to_have_text(XSS_NAME)
    expect(page.locator("#file-rows .file-name", has_text=XSS_NAME)).to_have_count(1)
    page.reload()
    expect(page.locator("#file-rows .file-name", has_text=XSS_NAME)).to_have_count(1)
    assert page.locator("#file-rows img, #upload-queue img").count() == 0
    assert dialogs == []


def test_state_changes_without_the_csrf_token_are_refused(contexts, ui_server):
    context = contexts()
    sign_in(context.new_page(), ui_server)
    file_id = dev_client(ui_server).put("/api/files/guarded.txt", content=b"g").json()["id"]
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    with httpx.Client(base_url=ui_server.url, cookies=cookies) as browser_like:
        assert browser_like.get("/ui/files").status_code == 200  # the cookie alone signs in
        assert browser_like.delete(f"/ui/files/{file_id}").status_code == 403
        assert browser_like.put("/api/files/sneaky.txt", content=b"s").status_code == 403
        assert browser_like.post("/logout").status_code == 403
    assert dev_client(ui_server).get(f"/api/files/{file_id}").status_code == 200


def test_without_javascript_a_plain_form_uploads_and_the_list_renders(contexts, ui_server):
    page = contexts(java_script_enabled=False).new_page()
    sign_in(page, ui_server)
    expect(page.get_by_role("button", name="Upload", exact=True)).to_be_visible()
    page.set_input_files("#upload-input", files=[
        {"name": "no-js-1.txt", "mimeType": "text/plain", "buffer": b"plain"},
        {"name": "no-js-2.txt", "mimeType": "text/plain", "buffer": b"form post"},
    ])
    page.get_by_role("button", name="Upload", exact=True).click()
    page.wait_for_load_state()
    assert page.url.rstrip("/") == ui_server.url
    expect(page.locator("#file-rows tr.file-row", has_text="no-js-1.txt")).to_contain_text("5 bytes")
    expect(page.locator("#file-rows tr.file-row", has_text="no-js-2.txt")).to_contain_text("9 bytes")
    snap(page, "no-javascript-desktop-light")
