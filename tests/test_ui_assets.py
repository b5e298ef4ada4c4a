"""Where the page's assets come from: the bundled htmx, the pinned CDN fallback with SRI, STATIC_URL, the wheel."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest
from quart import Quart

from upload_service import UploadService
from upload_service.assets import MANIFEST, STATIC_DIR, Assets, sri_hash
from upload_service.settings import Settings
from upload_service.ui import form_targets, human_size

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_ENTRIES = json.loads(MANIFEST.read_text())
HTMX, TUS = MANIFEST_ENTRIES["htmx"], MANIFEST_ENTRIES["tus"]


def local(path: str) -> str:
    return f"/uploads/static/{path}"


def static_dir_with(tmp_path: Path, *, bundled: bool) -> Path:
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "app.css").write_text("body {}")
    if bundled:
        (tmp_path / "vendor").mkdir()
        (tmp_path / "vendor" / "htmx.min.js").write_text("/* htmx */")
        (tmp_path / "vendor" / "tus.min.js").write_text("/* tus */")
    return tmp_path


def test_the_bundled_htmx_is_served_locally_with_its_own_hash(tmp_path):
    static = static_dir_with(tmp_path, bundled=True)
    assets = Assets(local, static_dir=static)
    script = assets.htmx()
    assert script.src.startswith("/uploads/static/vendor/htmx.min.js?v=")
    assert script.integrity == sri_hash(static / "vendor" / "htmx.min.js")
    assert "script-src 'self';" in assets.content_security_policy()


def test_without_the_bundled_copy_the_pinned_cdn_copy_is_used_with_the_recorded_hash(tmp_path):
    assets = Assets(local, static_dir=static_dir_with(tmp_path, bundled=False))
    for script, entry in ((assets.htmx(), HTMX), (assets.tus(), TUS)):
        assert script.src == entry["cdn"]
        assert script.integrity == entry["integrity"]
    assert (f"script-src 'self' {HTMX['cdn']} '{HTMX['integrity']}' {TUS['cdn']} '{TUS['integrity']}';"
            in assets.content_security_policy())  # those two files, never the whole CDN


def test_only_the_missing_file_comes_from_the_cdn(tmp_path):
    static = static_dir_with(tmp_path, bundled=True)
    (static / "vendor" / "tus.min.js").unlink()
    assets = Assets(local, static_dir=static)
    assert assets.htmx().src.startswith("/uploads/static/vendor/htmx.min.js?v=") and assets.tus().src == TUS["cdn"]
    assert f"script-src 'self' {TUS['cdn']} '{TUS['integrity']}';" in assets.content_security_policy()


def test_static_url_moves_every_asset_and_the_csp_allows_it(tmp_path):
    static = static_dir_with(tmp_path, bundled=True)
    assets = Assets(local, "https://cdn.example.org/upload-static/", static_dir=static)
    assert assets.url("css/app.css").startswith("https://cdn.example.org/upload-static/css/app.css?v=")
    assert assets.htmx().src.startswith("https://cdn.example.org/upload-static/vendor/htmx.min.js?v=")
    policy = assets.content_security_policy()
    assert "script-src 'self' https://cdn.example.org;" in policy
    assert "style-src 'self' https://cdn.example.org;" in policy


def test_the_fingerprint_changes_with_the_content(tmp_path):
    static = static_dir_with(tmp_path, bundled=True)
    assets = Assets(local, static_dir=static)
    before = assets.url("css/app.css")
    (static / "css" / "app.css").write_text("body { color: red }")
    os.utime(static / "css" / "app.css", (1, 1))
    assert assets.url("css/app.css") != before


@pytest.mark.parametrize("name", ["htmx", "tus"])
def test_the_manifest_matches_the_locked_npm_package_and_the_bundled_file(name):
    """assets.json pins what package-lock.json locks: the wheel build and the CDN fallback both rely on it."""
    entry = MANIFEST_ENTRIES[name]
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"][entry["package"]]
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"][f"node_modules/{entry['package']}"]
    assert entry["version"] == pinned == locked["version"]
    assert entry["cdn"] == f"https://cdn.jsdelivr.net/npm/{entry['package']}@{pinned}/{entry['source']}"
    bundled = STATIC_DIR / entry["file"]
    if not bundled.is_file():
        pytest.fail(f"run scripts/build-assets: the bundled {entry['file']} is missing")
    assert sri_hash(bundled) == entry["integrity"]


@pytest.mark.slow  # builds the wheel
def test_the_wheel_ships_templates_static_files_and_the_bundled_htmx(tmp_path):
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        pytest.fail("uv is needed to build the wheel (the test command installs it)")
    subprocess.run([uv, "build", "--wheel", "-q", "-o", str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ["upload_service/static/vendor/htmx.min.js", "upload_service/static/js/app.js",
                     "upload_service/static/css/app.css", "upload_service/assets.json",
                     "upload_service/templates/upload_service/index.html"]:
        assert expected in names


@pytest.mark.parametrize(("size", "shown"), [
    (0, "0 bytes"), (1, "1 byte"), (999, "999 bytes"), (1000, "1.0 KB"), (1536000, "1.5 MB"),
    (123_456_789, "123 MB"), (5 * 1024**3, "5.4 GB"),
])
def test_sizes_read_like_a_file_manager(size, shown):
    assert human_size(size) == shown


def test_fingerprinted_assets_are_cached_for_good_and_the_others_revalidated(make_server):
    server = make_server()
    page = httpx.get(server.url + "/").text
    stylesheet = re.search(r'href="(/static/css/app\.css\?v=\w+)"', page).group(1)
    assert httpx.get(server.url + stylesheet).headers["cache-control"] == "public, max-age=31536000, immutable"
    module = httpx.get(server.url + "/static/js/http.js")  # imported by app.js, so no fingerprint in its URL
    assert module.headers["cache-control"] == "no-cache"
    again = httpx.get(server.url + "/static/js/http.js", headers={"If-None-Match": module.headers["etag"]})
    assert again.status_code == 304


async def test_an_embedded_service_builds_every_page_url_under_its_prefix(tmp_path):
    app = Quart(__name__)
    settings = Settings(secret_key="embedded-secret-0123456789", dev=True, upload_dir=tmp_path)
    UploadService(app, settings=settings, url_prefix="/uploads")
    client = app.test_client()
    async with app.test_app():
        signin = await (await client.get("/uploads/")).get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', signin).group(1)
        assert (await client.post("/uploads/login/dev", form={"csrf_token": csrf})).status_code == 303
        page = await (await client.get("/uploads/")).get_data(as_text=True)
        urls = re.findall(r'(?:href|src|action|hx-get|data-[a-z-]+-url)="([^"#][^"]*)"', page)
        assert len(urls) >= 10
        for url in urls:
            assert url.startswith("/uploads/"), url
        app_js = re.search(r'src="(/uploads/static/js/app\.js[^"]*)"', page).group(1)
        assert (await client.get(app_js)).status_code == 200


class Provider:
    def __init__(self, method: str | None = None, origins: tuple[str, ...] | None = None) -> None:
        if method:
            self.login_method = method
        if origins is not None:
            self.login_origins = origins


def test_form_posts_may_only_go_where_sign_in_forms_say_they_redirect():
    assert form_targets([Provider("post", ()), Provider()]) == []  # links do not post forms
    assert form_targets([Provider("post", ("https://github.example.com/login/oauth",))]) == [
        "https://github.example.com"]
    assert form_targets([Provider("post", ()), Provider("post")]) is None  # unknown: no form-action at all
    assets = Assets(local, static_dir=STATIC_DIR)
    assert "form-action 'self' https://github.example.com;" in assets.content_security_policy(
        ["https://github.example.com"])
    assert "form-action" not in assets.content_security_policy(None)
