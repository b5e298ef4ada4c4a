"""The wheel: built with ``uv build``, installed into a fresh venv outside the repo, it runs on its own; built from
a clean checkout (what ``pip install .`` and ``pip install git+...`` build), it bundles the UI's npm files itself."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
from PIL import Image

from .servers import ROOT, free_port, wait_until_up

UV = "uv" if shutil.which("uv") else f"{sys.executable} -m uv"

pytestmark = pytest.mark.slow  # builds and installs wheels


def install_wheel(where: Path) -> tuple[Path, Path]:
    """(venv, wheel) from scripts/install-wheel, the very script the Dockerfile's build stage runs."""
    subprocess.run([str(ROOT / "scripts" / "install-wheel"), str(where / "venv"), str(where / "dist")],
                   check=True, capture_output=True, env={**os.environ, "UV": UV})
    (built,) = (where / "dist").glob("upload_service-*.whl")
    return where / "venv", built


def clean_env() -> dict[str, str]:
    """This machine's environment without the test run's settings and paths."""
    return {key: value for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "VIRTUAL_ENV", "SECRET_KEY", "API_TOKENS", "UPLOAD_DIR")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return install_wheel(tmp_path_factory.mktemp("installed"))


def test_the_wheel_holds_templates_assets_and_entry_points(installed: tuple[Path, Path]) -> None:
    wheel = installed[1]
    names = set(zipfile.ZipFile(wheel).namelist())
    source_templates = {f"upload_service/templates/{path.relative_to(ROOT / 'templates')}"
                        for path in (ROOT / "templates").rglob("*.html")}
    assert source_templates and source_templates <= names
    built_assets = {f"upload_service/static/{path.relative_to(ROOT / 'upload_service' / 'static')}"
                    for path in (ROOT / "upload_service" / "static").rglob("*") if path.is_file()}
    assert built_assets <= names  # whatever scripts/build-assets produced (htmx) ships in the wheel
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "upload-service = upload_service.cli:main" in text
    assert "upload_service = upload_service.testing" in text  # the pytest11 fixtures
    assert {"upload_service/testing/__init__.py", "upload_service/testing/_contract.py"} <= names  # and the kit
    assert not any(name.startswith(("tests/", "examples/")) for name in names)


def test_the_wheel_runs_from_a_clean_venv(installed: tuple[Path, Path], tmp_path: Path) -> None:
    venv = installed[0]
    env = clean_env()
    port = free_port()
    log = tmp_path / "server.log"
    process = subprocess.Popen([str(venv / "bin" / "upload-service"), "--dev", "--port", str(port)], cwd=tmp_path,
                               env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process, timeout=60)
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "Sign in as the local developer" in page.text
        assert httpx.get(url + "/api/docs").status_code == 200  # a packaged template beyond the index
        site = next((venv / "lib").glob("python*/site-packages"))
        assert not (site / "upload_service").resolve().is_relative_to(ROOT)  # really the installed copy
        for asset in (site / "upload_service" / "static").rglob("*"):
            if asset.is_file():
                served = httpx.get(f"{url}/static/{asset.relative_to(site / 'upload_service' / 'static')}")
                assert served.status_code == 200 and served.content == asset.read_bytes()
        assert (tmp_path / "uploads").is_dir()  # --dev stores under ./uploads of where it runs
    finally:
        process.terminate()
        process.wait(10)
    assert "DEVELOPMENT MODE" in log.read_text()


def test_pip_installing_the_images_plugin_extends_the_installed_service(tmp_path: Path) -> None:
    """``pip install upload-service-images`` next to the wheel: found by its entry point, no setting needed."""
    venv, _ = install_wheel(tmp_path / "install")
    subprocess.run([*UV.split(), "pip", "install", "--python", str(venv / "bin" / "python"),
                    str(ROOT / "plugins" / "images")], check=True, capture_output=True)
    env = {**clean_env(), "API_TOKENS": "alice:packaging-test-token-0123456789", "SECRET_KEY": "k" * 32,
           "UPLOAD_DIR": str(tmp_path / "uploads")}
    listed = subprocess.run([str(venv / "bin" / "upload-service"), "plugins"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, check=True)
    assert "register_routes" in {entry["name"]: entry for entry in json.loads(listed.stdout)}["images"]["hooks"]
    port = free_port()
    process = subprocess.Popen([str(venv / "bin" / "upload-service"), "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, timeout=60)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              headers={"Authorization": "Bearer packaging-test-token-0123456789"})
        picture = io.BytesIO()
        Image.new("RGB", (300, 200), (10, 120, 200)).save(picture, "PNG")
        file = client.put("/api/files/blue.png", content=picture.getvalue(), headers={"Content-Type": "image/png"})
        assert file.status_code == 201 and file.json()["metadata"]["image"]["width"] == 300
        thumbnail = client.get(f"/api/files/{file.json()['id']}/thumbnail")
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/webp"
        rows = client.get("/ui/files")
        assert f'src="/api/files/{file.json()["id"]}/thumbnail"' in rows.text
    finally:
        process.terminate()
        process.wait(10)


def clean_checkout(where: Path) -> Path:
    """What a clone of this tree holds: the tracked files and new ones not ignored; no node_modules, no bundle."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the work tree is not in a clone of it either
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, where / name)
    assert not (where / "upload_service" / "static" / "vendor").exists()
    return where


def pinned_assets() -> dict[str, dict[str, str]]:
    return json.loads((ROOT / "upload_service" / "assets.json").read_text())


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def path_without(directory: Path, *programs: str) -> str:
    """A PATH with every program of this one but ``programs`` (links in ``directory``)."""
    directory.mkdir()
    for entry in os.environ["PATH"].split(os.pathsep):
        for program in sorted(Path(entry).iterdir()) if Path(entry).is_dir() else []:
            if program.name not in programs and not (directory / program.name).exists():
                (directory / program.name).symlink_to(program)
    return str(directory)


def test_a_wheel_built_from_a_clean_checkout_bundles_the_ui_assets(tmp_path: Path) -> None:
    """``pip install .`` (or ``pip install git+...``) built a wheel without htmx and tus-js-client: the UI then
    loaded them from a CDN, and on a machine without internet the page never updated. Instead: with npm on PATH
    the build runs the locked ``npm ci`` and the wheel holds exactly the files assets.json pins."""
    source = clean_checkout(tmp_path / "source")
    subprocess.run([*UV.split(), "build", "--wheel", "-q", "-o", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("upload_service-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for entry in pinned_assets().values():
            assert sri(archive.read(f"upload_service/static/{entry['file']}")) == entry["integrity"], entry


def test_without_npm_the_wheel_builds_warns_and_its_ui_pins_the_cdn_files(tmp_path: Path) -> None:
    """Without npm the build goes on but says what it left out, and the installed service says at start-up that
    its UI has no bundle and lets the page load exactly the pinned CDN files (URL and hash), nothing else there."""
    source = clean_checkout(tmp_path / "source")
    env = {**clean_env(), "PATH": path_without(tmp_path / "bin", "npm", "node"), "UV": UV}
    built = subprocess.run([str(source / "scripts" / "install-wheel"), str(tmp_path / "venv"), str(tmp_path / "dist")],
                           env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    output = built.stdout + built.stderr
    assert "WITHOUT the UI's front-end files" in output and "npm is not on PATH" in output, output
    (wheel,) = (tmp_path / "dist").glob("upload_service-*.whl")
    assert not [name for name in zipfile.ZipFile(wheel).namelist() if "/vendor/" in name]
    port, log = free_port(), tmp_path / "server.log"
    process = subprocess.Popen([str(tmp_path / "venv" / "bin" / "upload-service"), "--dev", "--port", str(port)],
                               cwd=tmp_path, env=clean_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process, timeout=60)
        page = httpx.get(f"http://127.0.0.1:{port}/")
    finally:
        process.terminate()
        process.wait(10)
    warnings = [line for line in log.read_text().splitlines() if "WARNING" in line and "front-end bundle" in line]
    assert len(warnings) == 1 and "cdn.jsdelivr.net" in warnings[0], log.read_text()
    scripts = next(part for part in page.headers["content-security-policy"].split(";")
                   if part.strip().startswith("script-src")).split()[1:]
    pinned = pinned_assets().values()
    assert set(scripts) == {"'self'", *(entry["cdn"] for entry in pinned),
                            *(f"'{entry['integrity']}'" for entry in pinned)}
