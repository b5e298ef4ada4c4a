"""The command line: clear refusals before binding a port, and the --dev banner."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest

from .servers import free_port, start_server, wait_until_up

pytestmark = pytest.mark.process


def _run(args: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in ("SECRET_KEY", "API_TOKENS", "DEV")}
    return subprocess.run([sys.executable, "-m", "upload_service.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**clean, **env})


def test_refuses_to_start_without_a_secret_key(tmp_path):
    result = _run([], tmp_path)
    assert result.returncode == 2
    assert "SECRET_KEY is not set" in result.stderr


def test_names_the_bad_setting(tmp_path):
    result = _run([], tmp_path, SECRET_KEY="k" * 32, MAX_UPLOAD_SIZE="a lot")
    assert result.returncode == 2
    assert "MAX_UPLOAD_SIZE" in result.stderr and "not a size" in result.stderr


def test_malformed_api_tokens_are_a_startup_error(tmp_path):
    result = _run([], tmp_path, SECRET_KEY="k" * 32, API_TOKENS="no-colon-here")
    assert result.returncode == 2
    assert "API_TOKENS" in result.stderr


def test_dev_mode_prints_url_and_a_working_token(tmp_path):
    port = free_port()
    clean = {key: value for key, value in os.environ.items() if key not in ("SECRET_KEY", "API_TOKENS")}
    process = subprocess.Popen([sys.executable, "-m", "upload_service.cli", "--dev", "--port", str(port)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean)
    try:
        lines: list[str] = []  # the banner, after any start-up lines of plugins (inert ones say so once)
        while len(lines) < 40 and not (lines and "API token" in lines[-1]):
            lines.append(process.stdout.readline())
        banner = "".join(lines)
        assert "DEVELOPMENT MODE" in banner and "127.0.0.1 only" in banner
        assert f"http://127.0.0.1:{port}/" in banner
        token = re.search(r"API token\s+(\S+)", banner).group(1)
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        upload = httpx.put(f"http://127.0.0.1:{port}/api/files/hello.txt", content=b"hi",
                           headers={"Authorization": f"Bearer {token}"})
        assert upload.status_code == 201
        assert (tmp_path / "uploads" / "objects").is_dir()
        assert "Sign in as the local developer" in httpx.get(f"http://127.0.0.1:{port}/").text
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(("choice", "loop", "workers"), [("auto", "uvloop", "1"), ("asyncio", "asyncio", "1"),
                                                        ("auto", "uvloop", "2"), ("asyncio", "asyncio", "2")])
def test_event_loop_setting_picks_the_loop_that_serves(tmp_path, choice: str, loop: str, workers: str) -> None:
    server = start_server(tmp_path, event_loop=choice, workers=workers, log_level="INFO")
    try:
        client = server.client("alice")
        stored = client.put("/api/files/loop.bin", content=b"x" * 300_000)
        assert stored.status_code == 201 and client.get(stored.json()["url"]).content == b"x" * 300_000
        assert f"serving on the {loop} event loop" in server.log()
    finally:
        server.stop()
