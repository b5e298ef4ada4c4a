"""The "upload now, attach to a form later" flow in real Chromium: temporary uploads, tokens, persist."""

from __future__ import annotations

from playwright.sync_api import expect

from .browser import dev_client, dev_settings, sign_in

DESCRIPTION = "Quarterly <b>report</b> & notes"


def attach(page, name: str, content: bytes) -> None:
    page.set_input_files("#attach-input", files=[{"name": name, "mimeType": "text/plain", "buffer": content}])


def test_picked_files_become_tokens_and_saving_persists_them_with_the_description(contexts, make_server):
    server = make_server(**dev_settings())
    page = sign_in(contexts().new_page(), server)
    page.get_by_label("Description").fill(DESCRIPTION)
    attach(page, "first.txt", b"first file")
    attach(page, "second.txt", b"second")

    chips = page.locator("#attachments .chip[data-state=ready]")
    expect(chips).to_have_count(2)
    expect(chips.first).to_contain_text("first.txt")
    tokens = page.locator("#attachments input[type=hidden][name=token]")
    assert all(len(value) > 20 for value in tokens.evaluate_all("inputs => inputs.map(i => i.value)"))
    assert page.locator("#attach-input").input_value() == ""
    client = dev_client(server)
    assert {f["filename"] for f in client.get("/api/files", params={"temporary": 1}).json()["files"]} == {
        "first.txt", "second.txt"}

    page.get_by_role("button", name="Save").click()
    result = page.locator("#attach-result")
    expect(result).to_contain_text(f"Saved 2 files with the description “{DESCRIPTION}”.")
    expect(result.locator("li")).to_have_text(["first.txt", "second.txt"])
    expect(page.locator("#attachments .chip")).to_have_count(0)
    expect(page.locator("#file-rows tr.file-row", has_text="second.txt")).to_have_count(1)
    saved = client.get("/api/files").json()["files"]
    assert sorted(f["filename"] for f in saved) == ["first.txt", "second.txt"]
    assert all(f["metadata"] == {"description": DESCRIPTION} for f in saved)
    assert client.get("/api/files", params={"temporary": 1}).json()["files"] == []


def test_an_expired_attachment_gives_a_clear_message_on_save(contexts, make_server):
    server = make_server(**dev_settings(temp_upload_ttl="1s"))
    page = sign_in(contexts().new_page(), server)
    attach(page, "stale.txt", b"stale")
    expect(page.locator("#attachments .chip[data-state=ready]")).to_have_count(1)
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#attach-result")).to_contain_text("An attachment expired before the form was saved")
    expect(page.locator("#attach-result")).to_contain_text("Remove it and add the file again.")
    assert dev_client(server).get("/api/files").json()["files"] == []


def test_saving_without_attachments_asks_for_one(contexts, make_server):
    server = make_server(**dev_settings())
    page = sign_in(contexts().new_page(), server)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#attach-result")).to_have_text("Add at least one file first.")


def test_a_removed_attachment_is_not_saved(contexts, make_server):
    server = make_server(**dev_settings())
    page = sign_in(contexts().new_page(), server)
    attach(page, "keep.txt", b"keep")
    attach(page, "drop.txt", b"drop")
    expect(page.locator("#attachments .chip[data-state=ready]")).to_have_count(2)
    page.get_by_role("button", name="Remove drop.txt").click()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#attach-result")).to_contain_text("Saved 1 file.")
    assert [f["filename"] for f in dev_client(server).get("/api/files").json()["files"]] == ["keep.txt"]
