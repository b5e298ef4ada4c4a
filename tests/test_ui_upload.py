"""Uploading, listing, downloading and deleting files through the page, in real Chromium."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from .browser import dev_client, dev_settings, drop_files, sign_in, throttle_uploads
from .conftest import stored_files
from .plugins import refuse_executables


@pytest.fixture(scope="module")
def ui_server(request, tmp_path_factory):
    from .conftest import server_starter

    running = server_starter(request, tmp_path_factory, "local")(**dev_settings())
    yield running
    running.stop()


def row(page, name):
    return page.locator("#file-rows tr.file-row", has=page.get_by_text(name, exact=True))


def test_sign_in_page_has_a_button_per_provider_and_dev_sign_in_works(contexts, ui_server):
    page = contexts().new_page()
    page.goto(ui_server.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator(".providers li")).to_have_count(1)
    sign_in(page, ui_server)
    expect(page.locator(".who")).to_have_text("Signed in as local developer")
    expect(page.get_by_role("heading", name="My files")).to_be_visible()


def test_many_files_through_the_picker_reach_100_percent_and_appear_without_reload(contexts, ui_server):
    page = sign_in(contexts().new_page(), ui_server)
    page.evaluate("window.sameDocument = true")
    big = os.urandom(3 * 1024 * 1024)
    page.set_input_files("#upload-input", files=[
        {"name": "picked-big.bin", "mimeType": "application/octet-stream", "buffer": big},
        {"name": "picked-a.txt", "mimeType": "text/plain", "buffer": b"alpha"},
        {"name": "picked-b.txt", "mimeType": "text/plain", "buffer": b""},
    ])
    uploads = page.locator("#upload-queue .upload")
    expect(uploads).to_have_count(3)
    expect(page.locator("#upload-queue .upload[data-state=done]")).to_have_count(3)
    for index in range(3):
        expect(uploads.nth(index).locator(".upload-percent")).to_have_text("100 %")
        expect(uploads.nth(index).locator(".upload-speed")).to_have_text(re.compile(r"\d.* average$"))
    expect(row(page, "picked-big.bin")).to_contain_text("3.1 MB")
    expect(row(page, "picked-a.txt")).to_contain_text("5 bytes")
    expect(row(page, "picked-b.txt")).to_contain_text("0 bytes")
    assert page.evaluate("window.sameDocument") is True
    names = {f["filename"]: f for f in dev_client(ui_server).get("/api/files").json()["files"]}
    assert names["picked-big.bin"]["size"] == len(big)


def test_dropped_files_upload_and_appear(contexts, ui_server):
    page = sign_in(contexts().new_page(), ui_server)
    drop_files(page, "#upload-form", {"dropped-1.txt": "one", "dropped-2.txt": "two two"})
    expect(page.locator("#upload-queue .upload[data-state=done]")).to_have_count(2)
    expect(row(page, "dropped-1.txt")).to_contain_text("3 bytes")
    expect(row(page, "dropped-2.txt")).to_contain_text("7 bytes")


def test_progress_shows_percent_and_speed_while_uploading_and_cancel_stops_it(contexts, ui_server):
    page = sign_in(contexts().new_page(), ui_server)
    throttle_uploads(page, 256 * 1024)
    page.set_input_files("#upload-input", files=[
        {"name": "slow.bin", "mimeType": "application/octet-stream", "buffer": os.urandom(8 * 1024 * 1024)},
    ])
    upload = page.locator("#upload-queue .upload").first
    expect(upload.locator(".upload-percent")).to_have_text(re.compile(r"^([1-9]|[1-9]\d) %$"))
    expect(upload.locator(".upload-speed")).to_have_text(re.compile(r"\d.*/s$"))
    upload.get_by_role("button", name="Cancel upload of slow.bin").click()
    expect(upload.locator(".upload-state")).to_have_text("Cancelled")
    names = [f["filename"] for f in dev_client(ui_server).get("/api/files").json()["files"]]
    assert "slow.bin" not in names


def test_download_link_gives_the_bytes(contexts, ui_server):
    content = os.urandom(70_000)
    dev_client(ui_server).put("/api/files/download-me.bin", content=content).raise_for_status()
    context = contexts()
    page = sign_in(context.new_page(), ui_server)
    link = row(page, "download-me.bin").get_by_role("link", name="Download download-me.bin")
    response = context.request.get(ui_server.url + link.get_attribute("href"))
    assert response.status == 200
    assert response.body() == content
    assert "download-me.bin" in response.headers["content-disposition"]


def test_delete_asks_first_and_removes_the_row(contexts, ui_server):
    client = dev_client(ui_server)
    file_id = client.put("/api/files/delete-me.txt", content=b"bye").json()["id"]
    page = sign_in(contexts().new_page(), ui_server)
    messages = []

    page.once("dialog", lambda dialog: (messages.append(dialog.message), dialog.dismiss()))
    row(page, "delete-me.txt").get_by_role("button", name="Delete delete-me.txt").click()
    expect(row(page, "delete-me.txt")).to_have_count(1)
    assert messages == ["Delete “delete-me.txt”? This cannot be undone."]
    assert client.get(f"/api/files/{file_id}").status_code == 200

    page.once("dialog", lambda dialog: dialog.accept())
    row(page, "delete-me.txt").get_by_role("button", name="Delete delete-me.txt").click()
    expect(row(page, "delete-me.txt")).to_have_count(0)
    assert client.get(f"/api/files/{file_id}").status_code == 404


def test_older_files_load_below_the_first_page(contexts, make_server):
    server = make_server(**dev_settings())
    client = dev_client(server)
    for number in range(27):
        client.put(f"/api/files/page-{number:02}.txt", content=b"x").raise_for_status()
    page = sign_in(contexts().new_page(), server)
    rows = page.locator("#file-rows tr.file-row")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text("page-26.txt")
    page.get_by_role("link", name="Older files").click()
    expect(rows).to_have_count(27)
    expect(rows.last).to_contain_text("page-00.txt")
    expect(page.get_by_role("link", name="Older files")).to_have_count(0)


def test_refused_uploads_show_the_servers_detail_and_store_nothing(contexts, make_server):
    server = make_server(**dev_settings(max_upload_size="1KiB", plugins="tests.plugins.refuse_executables"))
    too_large = dev_client(server).put("/api/files/probe.bin", content=b"x" * 4096)
    assert too_large.status_code == 413
    page = sign_in(contexts().new_page(), server)
    page.set_input_files("#upload-input", files=[
        {"name": "too-big.bin", "mimeType": "application/octet-stream", "buffer": b"x" * 4096},
        {"name": "setup.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"},
        {"name": "small.txt", "mimeType": "text/plain", "buffer": b"fits"},
    ])
    for name, detail in [("too-big.bin", too_large.json()["detail"]), ("setup.exe", refuse_executables.DETAIL)]:
        refused = page.locator("#upload-queue .upload", has_text=name)
        expect(refused.locator(".upload-state")).to_have_text("Refused")
        expect(refused.locator(".upload-error")).to_have_text(detail)
        expect(row(page, name)).to_have_count(0)
    expect(row(page, "small.txt")).to_have_count(1)
    assert len(stored_files(server.upload_dir)) == 1


def test_an_upload_after_the_session_ended_says_so(contexts, ui_server):
    context = contexts()
    page = sign_in(context.new_page(), ui_server)
    page.wait_for_load_state("networkidle")  # a panel still loading would set the session cookie again
    context.clear_cookies()
    page.set_input_files("#upload-input", files=[{"name": "late.txt", "mimeType": "text/plain", "buffer": b"late"}])
    error = page.locator("#upload-queue .upload", has_text="late.txt").locator(".upload-error")
    expect(error).to_contain_text("You are signed out: sign in or send Authorization")


def test_the_page_works_from_the_keyboard_with_visible_focus_and_labelled_controls(contexts, ui_server):
    page = contexts().new_page()
    page.goto(ui_server.url + "/")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_role("button", name="Sign in as the local developer").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#file-rows")
    page.wait_for_load_state("load")

    unlabelled = page.evaluate("""[...document.querySelectorAll('input:not([type=hidden]), button, a[href]')]
        .filter(e => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim()))
        .map(e => e.outerHTML)""")
    assert unlabelled == []

    page.locator("#upload-input").focus()
    outline = page.eval_on_selector(".dropzone-label", "e => getComputedStyle(e).outlineStyle")
    assert outline == "solid"  # the hidden file input's focus shows on the drop zone

    dev_client(ui_server).put("/api/files/keyboard.txt", content=b"k").raise_for_status()
    page.reload()
    delete = row(page, "keyboard.txt").get_by_role("button", name="Delete keyboard.txt")
    delete.focus()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.once("dialog", lambda dialog: dialog.accept())
    page.keyboard.press("Enter")
    expect(row(page, "keyboard.txt")).to_have_count(0)
