"""The wheel: built with ``uv build``, installed into a fresh venv outside the repo, it runs on its own."""

from __future__ import annotations

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
