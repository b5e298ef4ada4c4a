"""plugins/images (upload-service-images) in a real server: dimensions, metadata stripped, thumbnails,
broken images and decompression bombs refused with nothing kept."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import pytest
from PIL import Image

from .browser import browser, contexts, dev_client, dev_settings, sign_in  # noqa: F401 (fixtures)
from .conftest import stored_files
from .faults import wait_for
from .servers import ROOT, Server, start_server

GPS_IFD, ORIENTATION, MAKE = 0x8825, 0x0112, 0x010F

pytestmark = pytest.mark.process  # the images plugin is not installed here: its server finds it on PYTHONPATH


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(ROOT / "plugins" / "images"))
        running = start_server(tmp_path_factory.mktemp("images"), plugins="upload_service_images.plugin",
                               images_max_pixels="1000000", images_thumbnail_size="64", **dev_settings())
    yield running
    running.stop()


def tagged_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE] = "SecretCameraMaker"
    exif[ORIENTATION] = 6  # rotate 90 degrees when shown
    exif[GPS_IFD] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    return exif


def image_bytes(fmt: str, size: tuple[int, int] = (40, 20), **options) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, fmt, **options)
    return out.getvalue()


def assert_clean(data: bytes) -> Image.Image:
    assert b"SecretCameraMaker" not in data
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert not image.getexif() and "exif" not in image.info
        return image


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")])
def test_images_are_measured_stripped_and_thumbnailed(server: Server, fmt: str, mime: str) -> None:
    client = server.client("alice")
    original = image_bytes(fmt, exif=tagged_exif().tobytes())
    assert b"SecretCameraMaker" in original
    answer = client.put(f"/api/files/photo.{fmt.lower()}", content=original, headers={"Content-Type": mime})
    assert answer.status_code == 201, answer.text
    file = answer.json()
    assert file["metadata"]["image"] == {"width": 20, "height": 40, "format": fmt}  # orientation applied
    content = client.get(file["url"]).content
    assert len(content) == file["size"]  # the answer describes the cleaned bytes
    assert hashlib.sha256(content).hexdigest() == file["sha256"]
    assert assert_clean(content).size == (20, 40)
    thumbnail = client.get(f"/api/files/{file['id']}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(thumbnail.content)) as thumb:
        assert thumb.format == "WEBP" and max(thumb.size) <= 64
    assert server.client("bob").get(f"/api/files/{file['id']}/thumbnail").status_code == 404


def test_multipart_png_text_chunks_are_dropped(server: Server) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "SecretCameraMaker at home")
    answer = server.client("alice").post("/api/upload", files={"file": ("p.png", image_bytes("PNG", pnginfo=info),
                                                                        "image/png")})
    assert answer.status_code == 201
    (file,) = answer.json()["files"]
    assert_clean(server.client("alice").get(file["url"]).content)


def test_other_files_pass_untouched_and_have_no_thumbnail(server: Server) -> None:
    client = server.client("alice")
    file = client.put("/api/files/notes.txt", content=b"plain text").json()
    assert file["metadata"] == {} and client.get(file["url"]).content == b"plain text"
    assert client.get(f"/api/files/{file['id']}/thumbnail").status_code == 404


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("broken.png", b"\x89PNG\r\n\x1a\nnot really", "not a valid PNG image"),
    ("broken.jpg", image_bytes("JPEG")[:40], "not a valid JPEG image"),
    ("bomb.png", image_bytes("PNG", size=(1100, 1000)), "more than 1000000 pixels"),
])
def test_broken_images_and_bombs_are_refused_and_nothing_is_kept(server: Server, name, data, reason) -> None:
    before = stored_files(server.upload_dir)
    mime = "image/png" if name.endswith(".png") else "image/jpeg"
    answer = server.client("alice").put(f"/api/files/{name}", content=data, headers={"Content-Type": mime})
    assert answer.status_code == 422 and reason in answer.json()["detail"]
    assert stored_files(server.upload_dir) == before
    assert server.client("alice").get("/healthz").status_code == 200


def test_deleting_a_file_removes_its_thumbnail(server: Server) -> None:
    client = server.client("carol")
    file = client.put("/api/files/x.png", content=image_bytes("PNG"), headers={"Content-Type": "image/png"}).json()
    stored_thumbnail = lambda: list((server.upload_dir / "objects" / "thumbnails").glob(f"*/{file['id']}"))  # noqa: E731
    assert len(stored_thumbnail()) == 1
    assert client.delete(f"/api/files/{file['id']}").status_code == 204
    assert client.get(f"/api/files/{file['id']}/thumbnail").status_code == 404  # the file is gone at once
    assert wait_for(lambda: stored_thumbnail() == [])  # file_deleted runs after the answer


def test_the_file_list_shows_thumbnails_of_images_only(server: Server, contexts) -> None:
    client = dev_client(server)
    photo = client.put("/api/files/holiday.png", content=image_bytes("PNG", size=(120, 80)),
                       headers={"Content-Type": "image/png"}).json()
    client.put("/api/files/notes-beside.txt", content=b"no picture here")
    assert photo["metadata"]["preview"] == "image_thumbnail"
    page = sign_in(contexts().new_page(), server)
    image_row = page.locator("#file-rows tr.file-row", has=page.get_by_text("holiday.png", exact=True))
    preview = image_row.locator("img.file-preview")
    preview.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=preview.element_handle())
    assert preview.get_attribute("src").endswith(f"/api/files/{photo['id']}/thumbnail")
    assert preview.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [64, 43]  # thumbnail, not original
    text_row = page.locator("#file-rows tr.file-row", has=page.get_by_text("notes-beside.txt", exact=True))
    assert text_row.locator("img").count() == 0


def test_a_share_shows_thumbnails_of_its_images_without_counting_downloads(server: Server) -> None:
    client = server.client()
    photo = client.put("/api/files/shared.png", content=image_bytes("PNG")).json()
    text = client.put("/api/files/shared.txt", content=b"words").json()
    share = client.post("/api/shares", json={"files": [photo["id"], text["id"]], "max_downloads": 1}).json()
    visitor = server.client(None)
    page = visitor.get(share["url"], headers={"Accept": "text/html"})
    assert f"{share['url']}/files/{photo['id']}/preview" in page.text
    assert f"{share['url']}/files/{text['id']}/preview" not in page.text
    preview = visitor.get(f"{share['url']}/files/{photo['id']}/preview")
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(preview.content)).format == "WEBP"
    assert visitor.get(f"{share['url']}/files/{text['id']}/preview").status_code == 404
    assert client.get(f"/api/shares/{share['id']}").json()["downloads"] == 0
