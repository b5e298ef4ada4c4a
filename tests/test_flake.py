"""flake.nix, evaluated with Debian's nix against a stub nixpkgs (nixpkgs itself cannot be fetched here).

This checks the flake's own wiring: it parses, its outputs evaluate for every system, the image matches the
Dockerfile's runtime. It cannot check nixpkgs' API or build anything; see docs/ops.md.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from .servers import ROOT

pytestmark = [pytest.mark.skipif(shutil.which("nix-instantiate") is None, reason="nix is not installed (apt nix-bin)"),
              pytest.mark.slow]  # nix evaluates the flake
SYSTEMS = ["aarch64-darwin", "aarch64-linux", "x86_64-linux"]


@pytest.fixture(scope="module")
def summary() -> dict:
    result = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "tests/nix/summary.nix"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_flake_parses() -> None:
    result = subprocess.run(["nix-instantiate", "--parse", "flake.nix"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_packages_for_every_system(summary: dict) -> None:
    assert summary["inputs"] == ["nixpkgs"]
    assert sorted(summary["packages"]) == SYSTEMS
    for system, package in summary["packages"].items():
        assert sorted(package["attrs"]) == ["default", "dockerImage"]
        assert package["pname"] == "upload-service" and package["version"] == "0.1.0"
        assert {"quart", "hypercorn", "pluggy", "prometheus-client"} <= set(package["dependencies"])
        expected = "aarch64-linux" if system == "aarch64-darwin" else system  # images are Linux images
        assert package["image"]["system"] == expected
    assert sorted(summary["devShells"]) == SYSTEMS and sorted(summary["apps"]) == SYSTEMS
    assert "uv" in summary["devShells"]["aarch64-darwin"] and "chromium" in summary["devShells"]["x86_64-linux"]


def test_docker_image_matches_the_dockerfile(summary: dict) -> None:
    assert sorted(summary["dockerImage"]) == ["aarch64-linux", "x86_64-linux"]  # nix build .#dockerImage.<system>
    dockerfile = (ROOT / "Dockerfile").read_text()
    healthcheck = json.loads(re.search(r'HEALTHCHECK .*?CMD (\[[^\n]*\])', dockerfile, re.S).group(1))
    uid = re.search(r"^USER (\S+)", dockerfile, re.M).group(1)
    for system, image in summary["dockerImage"].items():
        config = image["config"]
        assert image["system"] == system and image["name"] == "upload-service"
        assert config["User"] == uid
        assert {"UPLOAD_DIR=/uploads", "HOST=0.0.0.0", "PORT=8000"} <= set(config["Env"])
        assert config["Volumes"] == {"/uploads": {}} and config["ExposedPorts"] == {"8000/tcp": {}}
        assert config["Healthcheck"]["Test"][2:] == healthcheck[1:]  # the same check as the Dockerfile's
        assert image["cmd"].endswith("/bin/upload-service")


def test_htmx_comes_from_the_npm_lock_when_there_is_one(summary: dict) -> None:
    pre_build = summary["packages"]["x86_64-linux"]["preBuild"]
    if (ROOT / "package-lock.json").exists():
        assert "upload_service/static/vendor" in pre_build and "htmx.min.js" in pre_build
    else:
        assert pre_build == ""
