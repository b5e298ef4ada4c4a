"""The github plugin at start-up: off without an OAuth app, refuses half a configuration, listed as a plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .github_helpers import browser


def run_cli(tmp_path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GITHUB_")}
    env.update({"SECRET_KEY": "test-secret-key-0123456789abcdef", "UPLOAD_DIR": str(tmp_path / "uploads"),
                **{key.upper(): value for key, value in settings.items()}})
    return subprocess.run([sys.executable, "-m", "upload_service.cli", *args], check=False, env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.process  # the command line
def test_half_configured_oauth_app_refuses_to_start(tmp_path):
    result = run_cli(tmp_path, "cleanup", github_client_id="abc")

    assert result.returncode == 2
    assert "GitHub sign-in is half configured: set GITHUB_CLIENT_SECRET too" in result.stderr


@pytest.mark.process
def test_github_url_must_be_an_http_url(tmp_path, github_double):
    result = run_cli(tmp_path, "cleanup", **{**github_double.settings(), "github_api_url": "api.github.com"})

    assert result.returncode == 2 and "GITHUB_API_URL='api.github.com' is not an http(s) URL" in result.stderr


@pytest.mark.process
def test_plugin_is_listed_with_its_hooks(tmp_path):
    result = run_cli(tmp_path, "plugins")

    plugins = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert plugins["github"]["hooks"] == ["register_auth_providers", "register_routes", "startup"]


def test_without_oauth_app_there_is_no_github_sign_in(make_server, github_double):
    server = make_server(github_url=github_double.url, github_api_url=github_double.api_url)
    client = browser(server)

    assert 'action="/login"' not in client.get("/").text
    assert client.get("/login").status_code == 404
    token = server.client(None)
    token.headers["Authorization"] = "Bearer ghp_" + "1" * 36
    assert token.get("/api/files").status_code == 401
    assert github_double.total_calls() == 0


def test_disabled_plugin_is_off(make_server, github_double):
    github_double.add_user("octocat")
    server = make_server(**github_double.settings(), disabled_plugins="github")

    assert browser(server).get("/login").status_code == 404
