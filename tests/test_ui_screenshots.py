"""Screenshots of the main states, on a desktop and a 375 px phone, in light and dark: for people to look at.

Saved under ``test-artifacts/screenshots/<state>-<device>-<scheme>.png``; each state is also checked.
"""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import expect

from .browser import dev_client, dev_settings, sign_in, snap, throttle_uploads

DEVICES = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 375, "height": 740}}
EXISTING = [("Annual report 2026.pdf", 2_345_678, "application/pdf"), ("team-photo.jpg", 845_120, "image/jpeg"),
            ("notes.md", 1_204, "text/markdown")]


@pytest.fixture(scope="module")
def ui_server(request, tmp_path_factory):
    from .conftest import server_starter

    running = server_starter(request, tmp_path_factory, "local")(**dev_settings(
        plugins="tests.plugins.refuse_executables"))
    client = dev_client(running)
    for name, size, content_type in EXISTING:
        client.put(f"/api/files/{name}", content=os.urandom(size), headers={"Content-Type": content_type})
    yield running
    running.stop()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_main_states(contexts, ui_server, device, scheme):
    context = contexts(viewport=DEVICES[device], color_scheme=scheme)
    page = context.new_page()
    page.goto(ui_server.url + "/")
    expect(page.get_by_role("button", name="Sign in as the local developer")).to_be_visible()
    snap(page, f"signin-{device}-{scheme}")

    sign_in(page, ui_server)
    expect(page.locator("#file-rows tr.file-row")).to_have_count(len(EXISTING))
    snap(page, f"files-{device}-{scheme}")

    throttle_uploads(page, 512 * 1024)
    page.set_input_files("#upload-input", files=[
        {"name": "holiday-video.mp4", "mimeType": "video/mp4", "buffer": os.urandom(6 * 1024 * 1024)},
        {"name": "setup.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"},
        {"name": "checklist.txt", "mimeType": "text/plain", "buffer": b"pack, go"},
    ])
    video = page.locator("#upload-queue .upload", has_text="holiday-video.mp4")
    expect(video.locator(".upload-percent")).to_have_text(re.compile(r"^[1-9]\d? %$"))
    expect(page.locator("#upload-queue .upload[data-state=failed]")).to_have_count(1)
    expect(page.locator("#upload-queue .upload[data-state=done]")).to_have_count(1)
    expect(page.locator("#file-rows tr.file-row", has_text="checklist.txt")).to_have_count(1)
    snap(page, f"uploading-{device}-{scheme}")
    video.get_by_role("button", name="Cancel upload of holiday-video.mp4").click()
    expect(video.locator(".upload-state")).to_have_text("Cancelled")
    throttle_uploads(page, -1)

    page.get_by_label("Description").fill("Receipts for the trip")
    page.set_input_files("#attach-input", files=[{"name": "receipt-hotel.pdf", "mimeType": "application/pdf",
                                                  "buffer": b"%PDF-1.4 receipt"}])
    page.set_input_files("#attach-input", files=[{"name": "receipt-train.pdf", "mimeType": "application/pdf",
                                                  "buffer": b"%PDF-1.4 ticket"}])
    expect(page.locator("#attachments .chip[data-state=ready]")).to_have_count(2)
    snap(page, f"form-attached-{device}-{scheme}")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#attach-result")).to_contain_text("Saved 2 files")
    expect(page.locator("#file-rows tr.file-row", has_text="receipt-")).to_have_count(2)
    snap(page, f"form-saved-{device}-{scheme}")
    for file in dev_client(ui_server).get("/api/files").json()["files"]:  # the next run starts from EXISTING
        if file["filename"] not in {name for name, _, _ in EXISTING}:
            dev_client(ui_server).delete(f"/api/files/{file['id']}")
