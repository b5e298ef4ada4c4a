"""The Dockerfile (no Docker engine here): hadolint passes, it builds with the scripts CI runs, and its
HEALTHCHECK command really tells a live server from a dead one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import ROOT, free_port

DOCKERFILE = ROOT / "Dockerfile"

pytestmark = pytest.mark.slow  # hadolint, and the image's health check command as a process


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_built_with_the_scripts_ci_runs() -> None:
    runs = " ".join(args for name, args in instructions() if name == "RUN")
    assert "scripts/build-assets" in runs and "scripts/install-wheel /opt/venv" in runs
    assert "scripts/build-assets" in (ROOT / "scripts" / "test").read_text()
    assert "scripts\" / \"install-wheel\"" in (ROOT / "tests" / "test_packaging.py").read_text()
    stages = [args for name, args in instructions() if name == "FROM"]
    assert len(stages) == 3 and stages[-1].startswith("python:3.11-slim")


def test_runtime_settings_user_volume_and_no_secrets() -> None:
    final = instructions()
    final = final[max(i for i, (name, _) in enumerate(final) if name == "FROM"):]
    settings = " ".join(args for name, args in final if name == "ENV")
    assert "UPLOAD_DIR=/uploads" in settings and "HOST=0.0.0.0" in settings and "PORT=8000" in settings
    assert ("VOLUME", '["/uploads"]') in final and ("EXPOSE", "8000") in final
    (user,) = [args for name, args in final if name == "USER"]
    assert not user.startswith(("0", "root"))
    everything = " ".join(args for name, args in instructions() if name in ("ENV", "ARG"))
    assert not re.search(r"SECRET|TOKEN|PASSWORD|GITHUB_CLIENT", everything, re.I)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored and "uploads" in ignored


@pytest.mark.parametrize("alive", [True, False])
def test_the_healthcheck_command_tells_up_from_down(make_server, alive: bool) -> None:
    (healthcheck,) = [args for name, args in instructions() if name == "HEALTHCHECK"]
    command = json.loads(healthcheck.split("CMD", 1)[1])
    port = free_port()
    if alive:
        server = make_server()
        port = int(server.url.rsplit(":", 1)[1])
    result = subprocess.run([sys.executable, *command[1:]], env={**os.environ, "PORT": str(port)},
                            capture_output=True, timeout=20)
    assert command[0] == "python"
    assert (result.returncode == 0) is alive
