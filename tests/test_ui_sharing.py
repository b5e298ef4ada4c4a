"""Sharing through the page, in real Chromium: the Share dialog for one file and a selection, the Shares and
Requests panels, and the public pages a visitor sees (light and dark, phone-sized too)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .browser import dev_client, dev_settings, sign_in, snap


@pytest.fixture(scope="module")
def ui_server(request, tmp_path_factory):
    from .conftest import server_starter

    running = server_starter(request, tmp_path_factory, "local")(**dev_settings(ui_tus_threshold="100KiB"))
    yield running
    running.stop()


def _row(page, name):
    return page.locator("#file-rows tr.file-row", has=page.get_by_text(name, exact=True))


def _share_link(page) -> str:
    link = page.locator("#share-link")
    expect(link).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/s/[A-Za-z0-9_-]{32}$"))
    return link.input_value()


def test_share_one_file_with_a_limit_and_a_visitor_downloads_it(contexts, ui_server):
    api = dev_client(ui_server)
    api.put("/api/files/ui-shared.txt", content=b"shared through the dialog")
    page = sign_in(contexts().new_page(), ui_server)
    _row(page, "ui-shared.txt").get_by_role("button", name="Share ui-shared.txt").click()
    dialog = page.locator("#share-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Max downloads").fill("1")
    dialog.get_by_label("Note").fill("Here you go")
    dialog.get_by_role("button", name="Create link").click()
    url = _share_link(page)
    snap(page, "sharing-dialog")
    dialog.get_by_role("button", name="Close").click()
    expect(page.locator("#share-rows .link-row").first).to_contain_text("0 of 1 download")

    visitor = contexts(color_scheme="dark").new_page()
    visitor.goto(url)
    expect(visitor.get_by_role("heading", name="1 shared file")).to_be_visible()
    expect(visitor.get_by_text("Here you go")).to_be_visible()
    expect(visitor.get_by_text("1 download left.")).to_be_visible()
    snap(visitor, "sharing-public-page-dark")
    with visitor.expect_download() as download:
        visitor.get_by_role("link", name="Download ui-shared.txt").click()
    assert download.value.suggested_filename == "ui-shared.txt"
    with open(download.value.path(), "rb") as saved:
        assert saved.read() == b"shared through the dialog"
    visitor.reload()
    expect(visitor.get_by_role("heading", name="This link is no longer available")).to_be_visible()
    page.reload()
    expect(page.locator("#share-rows .link-row").first).to_contain_text("1 of 1 download")


def test_share_a_selection_with_a_password_then_revoke_it(contexts, ui_server):
    api = dev_client(ui_server)
    for name in ("sel-a.txt", "sel-b.txt"):
        api.put(f"/api/files/{name}", content=name.encode())
    page = sign_in(contexts().new_page(), ui_server)
    share_selected = page.get_by_role("button", name="Share selected")
    expect(share_selected).to_be_disabled()
    page.get_by_label("Select sel-a.txt for sharing").check()
    page.get_by_label("Select sel-b.txt for sharing").check()
    expect(page.locator("#share-selected-count")).to_have_text("2 selected")
    share_selected.click()
    dialog = page.locator("#share-dialog")
    expect(dialog.locator("#share-what")).to_have_text("2 files")
    dialog.get_by_label("Password").fill("pass phrase")
    dialog.get_by_role("button", name="Create link").click()
    url = _share_link(page)
    dialog.get_by_role("button", name="Close").click()

    visitor = contexts(viewport={"width": 390, "height": 844}).new_page()  # a phone
    visitor.goto(url)
    expect(visitor.get_by_role("heading", name="This link is protected")).to_be_visible()
    visitor.get_by_label("Password").fill("wrong")
    visitor.get_by_role("button", name="Open").click()
    expect(visitor.get_by_role("alert")).to_have_text("wrong password")
    visitor.get_by_label("Password").fill("pass phrase")
    visitor.get_by_role("button", name="Open").click()
    expect(visitor.get_by_role("heading", name="2 shared files")).to_be_visible()
    expect(visitor.get_by_role("link", name="Download all as zip")).to_be_visible()
    snap(visitor, "sharing-public-page-phone")

    page.once("dialog", lambda confirm: confirm.accept())
    rows = page.locator("#share-rows .link-row")
    before = rows.count()
    rows.filter(has_text="2 files").first.get_by_role("button", name=re.compile("^Revoke")).click()
    expect(rows).to_have_count(before - 1)
    visitor.reload()
    expect(visitor.get_by_role("heading", name="No such link")).to_be_visible()


def test_a_file_request_made_on_the_page_takes_a_strangers_upload(contexts, ui_server):
    page = sign_in(contexts().new_page(), ui_server)
    form = page.locator("#request-form")
    form.get_by_label("Title").fill("Scans for the tax return")
    form.get_by_label("Max files").fill("2")
    form.get_by_role("button", name="Create request link").click()
    row = page.locator("#request-rows .link-row", has_text="Scans for the tax return")
    expect(row).to_contain_text("0 of 2 files received")
    expect(form.get_by_label("Title")).to_have_value("")
    url = ui_server.url + row.get_by_role("link").get_attribute("href")

    stranger = contexts().new_page()
    stranger.goto(url)
    expect(stranger.get_by_role("heading", name="Scans for the tax return")).to_be_visible()
    snap(stranger, "sharing-request-page")
    tus_requests = []
    stranger.on("request", lambda sent: tus_requests.append(sent.method) if "/tus/" in sent.url else None)
    stranger.get_by_label("Your name").fill("Zoë 王")
    stranger.get_by_label("A note").fill("the first scan\nof two")
    stranger.set_input_files("#request-files", files=[
        {"name": "scan-1.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 scan" + bytes(300_000)}])
    row = stranger.locator("#request-queue .upload", has_text="scan-1.pdf")
    expect(row).to_have_attribute("data-state", "done")
    expect(row.locator(".upload-percent")).to_have_text("100 %")
    received = {f["filename"]: f for f in dev_client(ui_server).get("/api/files").json()["files"]}
    assert received["scan-1.pdf"]["metadata"]["uploaded_by"] == "Zoë 王"
    assert received["scan-1.pdf"]["metadata"]["uploader_note"] == "the first scan\nof two"
    assert "POST" in tus_requests and "PATCH" in tus_requests  # over the threshold: resumable, by tus
    page.reload()
    expect(page.locator("#request-rows .link-row", has_text="Scans for the tax return")).to_contain_text(
        "1 of 2 files received")
