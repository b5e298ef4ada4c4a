"""The oidc plugin from the command line: listed by ``upload-service plugins``, its settings read from the
environment (names made from OIDC_PROVIDERS), a misconfiguration refusing start-up, and DISABLED_PLUGINS."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run_cli(tmp_path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OIDC_")}
    env.update({"SECRET_KEY": "test-secret-key-0123456789abcdef", "UPLOAD_DIR": str(tmp_path / "uploads"),
                **settings})
    return subprocess.run([sys.executable, "-m", "upload_service.cli", *args], check=False, env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.process  # the command line
def test_the_plugin_is_listed_with_its_hooks(tmp_path):
    plugins = {entry["name"]: entry for entry in json.loads(run_cli(tmp_path, "plugins").stdout)}

    assert plugins["oidc"]["hooks"] == ["plugin_status", "register_auth_providers", "register_routes", "startup"]
    assert plugins["oidc"]["version"] == "0.1.0"
    # every installed integration says it is inactive, and which setting turns it on
    assert plugins["oidc"]["status"].startswith("inactive: set OIDC_PROVIDERS")
    assert plugins["clamav"]["status"].startswith("inactive: set CLAMD_URL")
    assert plugins["webhooks"]["status"].startswith("inactive: no endpoint configured (set WEBHOOK_URLS")
    assert "status" not in plugins["local_storage"]


@pytest.mark.process
def test_the_plugins_command_says_what_a_configured_or_misconfigured_plugin_does(tmp_path):
    configured = run_cli(tmp_path, "plugins", OIDC_PROVIDERS="corp,lab", OIDC_CORP_ISSUER="https://id.example.org",
                         OIDC_CORP_CLIENT_ID="uploads", OIDC_LAB_ISSUER="https://lab.example.org",
                         OIDC_LAB_CLIENT_ID="uploads", CLAMD_URL="tcp://127.0.0.1:3310")
    broken = run_cli(tmp_path, "plugins", CLAMD_URL="ftp://clamd")

    statuses = {entry["name"]: entry.get("status") for entry in json.loads(configured.stdout)}
    assert statuses["oidc"] == "sign-in with corp, lab"
    assert statuses["clamav"] == "scanning uploads with clamd at tcp://127.0.0.1:3310 (CLAMAV_FAIL=closed)"
    statuses = {entry["name"]: entry.get("status") for entry in json.loads(broken.stdout)}
    assert broken.returncode == 0, broken.stderr
    assert statuses["clamav"].startswith("misconfigured: CLAMD_URL='ftp://clamd' is not a clamd address")


@pytest.mark.process
def test_provider_settings_come_from_the_environment_and_a_missing_one_refuses_start_up(tmp_path):
    result = run_cli(tmp_path, "cleanup", OIDC_PROVIDERS="corp,lab", OIDC_CORP_ISSUER="https://id.example.org",
                     OIDC_CORP_CLIENT_ID="uploads", OIDC_LAB_ISSUER="https://lab.example.org")

    assert result.returncode == 2  # corp's settings were read and found complete; lab's are not
    assert "OpenID Connect provider 'lab' has no OIDC_LAB_CLIENT_ID" in result.stderr


@pytest.mark.process
def test_disabled_plugins_blocks_it_before_its_settings_are_read(tmp_path):
    result = run_cli(tmp_path, "plugins", OIDC_PROVIDERS="corp", OIDC_CORP_ISSUER="not a url",
                     DISABLED_PLUGINS="oidc")

    assert result.returncode == 0, result.stderr
    assert "oidc" not in [entry["name"] for entry in json.loads(result.stdout)]
