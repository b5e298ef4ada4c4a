"""The plugin system: a plugin distribution installed with pip extends a running service through entry points."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import object_files
from .servers import start_server

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # builds a virtual environment and installs a plugin with pip

PLUGIN_MODULE = '''
from upload_service import UploadRejected, hookimpl


@hookimpl
def validate_upload(upload):
    if upload.filename.endswith(".exe"):
        raise UploadRejected("executables are not accepted here")


@hookimpl
async def process_upload(file):
    return {"checked_by": "demo-plugin", "size_seen": file.size}
'''

PLUGIN_PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "upload-service-demo"
version = "1.2.3"

[project.entry-points.upload_service]
demo = "upload_service_demo"
'''


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.fail("uv is needed to build the plugin test's virtual environment (the test command installs it)")
    return found


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with upload-service and a demo plugin installed from source by pip (uv pip)."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = tmp / "upload-service-demo"
    source.mkdir()
    (source / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (source / "upload_service_demo.py").write_text(PLUGIN_MODULE)
    venv = tmp / "venv"
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run([_uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(ROOT), str(source)],
                   check=True)
    return venv


def test_installed_plugin_hooks_run(plugin_venv, tmp_path):
    server = start_server(tmp_path, python=str(plugin_venv / "bin" / "python"))
    try:
        client = server.client()
        refused = client.put("/api/files/setup.exe", content=b"MZ")
        assert refused.status_code == 422
        assert refused.json()["detail"] == "executables are not accepted here"
        assert object_files(server.upload_dir / "objects") == []
        accepted = client.put("/api/files/notes.txt", content=b"twelve bytes")
        assert accepted.status_code == 201
        assert accepted.json()["metadata"] == {"checked_by": "demo-plugin", "size_seen": 12}
        assert client.get(f"/api/files/{accepted.json()['id']}").json()["metadata"]["checked_by"] == "demo-plugin"
    finally:
        server.stop()


def test_plugins_command_lists_name_version_hooks(plugin_venv, tmp_path):
    env = {**os.environ, "SECRET_KEY": "x" * 32, "UPLOAD_DIR": str(tmp_path)}
    result = subprocess.run([str(plugin_venv / "bin" / "upload-service"), "plugins"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, check=True)
    plugins = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert plugins["demo"] == {"name": "demo", "version": "1.2.3", "hooks": ["process_upload", "validate_upload"]}
    assert "register_storage_backends" in plugins["local_storage"]["hooks"]
    assert plugins["local_storage"]["version"] == "0.1.0"


def test_disabled_plugin_is_not_loaded(plugin_venv, tmp_path):
    env = {**os.environ, "SECRET_KEY": "x" * 32, "UPLOAD_DIR": str(tmp_path), "DISABLED_PLUGINS": "demo,cleanup"}
    result = subprocess.run([str(plugin_venv / "bin" / "upload-service"), "plugins"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, check=True)
    names = {entry["name"] for entry in json.loads(result.stdout)}
    assert "demo" not in names and "cleanup" not in names and "local_storage" in names
