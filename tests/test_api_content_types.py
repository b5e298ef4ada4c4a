"""ALLOWED_CONTENT_TYPES / DENIED_CONTENT_TYPES, decided from the content's first bytes (libmagic), never from
the client's Content-Type or the filename; and the sniffed type is what the file is stored and served with."""

from __future__ import annotations

import base64
import io
import os
import random

import pytest
from PIL import Image

from upload_service.content_types import Sniffer

from .conftest import staging_entries, stored_files
from .tus import TUS, create, metadata, no_uploads_left, patch

HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


async def test_the_sniffer_runs_from_open_to_close():
    """Its thread starts with the service (``open``) and ends with it, never at import."""
    sniffer = Sniffer()
    with pytest.raises(RuntimeError, match="not open"):
        await sniffer.sniff(HTML)
    sniffer.open()
    assert await sniffer.sniff(b"%PDF-1.4\n") == "application/pdf"
    await sniffer.close()
    with pytest.raises(RuntimeError, match="not open"):
        await sniffer.sniff(HTML)


def png() -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(image, "PNG")
    return image.getvalue()


@pytest.fixture(scope="module")
def images_only(request, tmp_path_factory, storage_backend):
    from .conftest import server_starter

    server = server_starter(request, tmp_path_factory, storage_backend)(
        allowed_content_types="image/*", denied_content_types="image/svg+xml")
    yield server
    server.stop()


def assert_refused(response, sniffed: str) -> None:
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert sniffed in detail and "allowed: image/*" in detail


def test_a_png_under_any_name_and_claim_is_stored_and_served_as_png(images_only):
    client = images_only.client()
    response = client.put("/api/files/notes.txt", content=png(), headers={"Content-Type": "text/plain"})
    assert response.status_code == 201, response.text
    file = response.json()
    assert file["content_type"] == "image/png"
    download = client.get(file["url"])
    assert download.headers["content-type"] == "image/png" and download.content == png()


def test_html_claiming_to_be_an_image_is_refused_and_nothing_is_kept(images_only):
    before = stored_files(images_only, "files/")
    refused = images_only.client().post("/api/upload", files={"file": ("photo.png", HTML, "image/png")})
    assert_refused(refused, "text/html")
    assert stored_files(images_only, "files/") == before and staging_entries(images_only) == []


def test_the_denylist_wins_over_the_allowlist(images_only):
    refused = images_only.client().put("/api/files/logo.svg", content=SVG, headers={"Content-Type": "image/svg+xml"})
    assert_refused(refused, "image/svg+xml")


def test_one_refused_file_refuses_the_whole_batch(images_only):
    before = stored_files(images_only, "files/")
    plain_bytes = random.Random(7).randbytes(2000)  # libmagic: application/octet-stream
    items = [{"filename": "ok.png", "content": base64.b64encode(png()).decode()},
             {"filename": "bad.png", "content": base64.b64encode(plain_bytes).decode()}]
    assert_refused(images_only.client().post("/api/upload", json=items), "application/octet-stream")
    assert stored_files(images_only, "files/") == before


def test_a_tus_upload_is_judged_on_its_bytes_when_it_completes(images_only):
    client = images_only.client()
    url = create(client, len(HTML), Upload_Metadata=metadata(filename="innocent.png", filetype="image/png"))
    assert patch(client, url, 0, HTML[:10]).status_code == 204
    refused = patch(client, url, 10, HTML[10:])
    assert_refused(refused, "text/html")
    assert client.head(url, headers=TUS).status_code == 404 and no_uploads_left(images_only)
    image = png()
    url = create(client, len(image), Upload_Metadata=metadata(filename="a.bin", filetype="text/plain"))
    done = patch(client, url, 0, image)
    assert done.status_code == 204
    assert client.get(f"/api/files/{done.headers['Upload-File-Id']}").json()["content_type"] == "image/png"


def test_without_a_policy_the_label_is_stored_but_never_trusted_for_display(server):
    """No lists set: nothing is sniffed at upload (libmagic is not loaded), the claimed type is stored, and
    serving still refuses to show HTML labelled as an image inline."""
    client = server.client()
    labelled = client.put("/api/files/doc.bin", content=HTML, headers={"Content-Type": "image/png"})
    assert labelled.status_code == 201 and labelled.json()["content_type"] == "image/png"
    download = client.get(labelled.json()["url"])
    assert download.content == HTML and download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["content-type"] == "image/png" and "sandbox" in download.headers["content-security-policy"]
    unknown = client.put("/api/files/data.x", content=os.urandom(500), headers={"Content-Type": "application/x-test"})
    assert unknown.json()["content_type"] == "application/x-test"
