"""Signing in with GitHub in real Chromium, through the GitHub double on 127.0.0.1."""

from __future__ import annotations

from playwright.sync_api import expect

from .browser import snap


def test_the_github_button_signs_in_and_the_page_works(contexts, make_server, github_double):
    github_double.add_user("octocat", email="octocat@example.com")
    server = make_server(**github_double.settings())
    page = contexts().new_page()
    response = page.goto(server.url + "/")
    assert f"form-action 'self' {github_double.url};" in response.headers["content-security-policy"]
    page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page.locator(".who")).to_have_text("Signed in as octocat")
    page.wait_for_load_state("load")
    assert page.url == server.url + "/"
    page.set_input_files("#upload-input", files=[{"name": "from-github.txt", "mimeType": "text/plain",
                                                  "buffer": b"hello"}])
    expect(page.locator("#file-rows tr.file-row", has_text="from-github.txt")).to_have_count(1)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in with GitHub")).to_be_visible()


def test_a_refused_github_sign_in_shows_the_error_page_in_the_ui_style(contexts, make_server, github_double):
    github_double.add_user("octocat")
    github_double.deny = True
    server = make_server(**github_double.settings())
    page = contexts().new_page()
    page.goto(server.url + "/")
    page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page.locator("#signin-error")).to_be_visible()
    assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("system-ui")
    snap(page, "github-refused-desktop-light")
