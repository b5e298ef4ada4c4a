"""Findings of the security review (SECURITY.md), each pinned against a real server or the real command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from .browser import dev_settings
from .conftest import server_starter
from .servers import ROOT, Server, free_port


@pytest.fixture(scope="module")
def dev_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = server_starter(request, tmp_path_factory, "local")(**dev_settings())
    yield running
    running.stop()


def signed_in_browser(server: Server) -> tuple[httpx.Client, str]:
    """A cookie session made the way a browser makes it (the dev sign-in form), and its CSRF token."""
    browser = httpx.Client(base_url=server.url, timeout=30)
    server.clients.append(browser)
    def page_token() -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/").text).group(1)

    assert browser.post("/login/dev", data={"csrf_token": page_token()}).status_code == 303
    assert browser.get("/ui/files").status_code == 200
    return browser, page_token()  # signing in starts a new token


def test_an_authorization_header_that_is_not_a_bearer_token_does_not_skip_the_csrf_check(dev_server: Server) -> None:
    """A browser sends ``Authorization: Basic`` by itself behind a proxy that asked for it: with the session
    cookie beside it, the request is cookie-authenticated and needs the CSRF token like any other."""
    browser, token = signed_in_browser(dev_server)
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert browser.put("/api/files/forged.txt", content=b"f", headers=basic).status_code == 403
    assert browser.post("/api/upload", files={"file": ("forged.txt", b"f")}, headers=basic).status_code == 403
    allowed = browser.put("/api/files/mine.txt", content=b"m", headers={**basic, "X-CSRF-Token": token})
    assert allowed.status_code == 201
    assert browser.delete(f"/api/files/{allowed.json()['id']}", headers=basic).status_code == 403


def serve(tmp_path, **env: str) -> subprocess.CompletedProcess:
    settings = {**os.environ, "SECRET_KEY": "s" * 32, "UPLOAD_DIR": str(tmp_path / "u"), "PORT": str(free_port()),
                "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "upload_service.cli"], env=settings, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.process
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.org"])
def test_the_passwordless_dev_sign_in_refuses_to_listen_beyond_loopback(tmp_path, host: str) -> None:
    refused = serve(tmp_path, DEV="1", HOST=host)
    assert refused.returncode == 2
    assert "DEV is on" in refused.stderr and "loopback" in refused.stderr


@pytest.mark.process
def test_dev_on_loopback_still_starts(tmp_path) -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        started = subprocess.run([sys.executable, "-m", "upload_service.cli", "plugins"], cwd=tmp_path,
                                 env={**os.environ, "DEV": "1", "HOST": host, "SECRET_KEY": "s" * 32,
                                      "UPLOAD_DIR": str(tmp_path / "u")},
                                 capture_output=True, text=True, timeout=30)
        assert started.returncode == 0, started.stderr
