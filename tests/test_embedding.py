"""The example host app (examples/host_app.py) under a real Hypercorn server: the service lives inside it
without disturbing it, twice, with the host's own login, pages and templates, configured by its own settings
whatever the environment says."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .browser import browser, contexts  # noqa: F401 (fixtures)
from .conftest import object_files
from .servers import ROOT, free_port, wait_until_up

pytestmark = pytest.mark.process  # the example host app under Hypercorn's own command


def foreign_environment(data: Path) -> dict[str, str]:
    """The service's own variables, set where the host app runs: its ``Settings(...)`` must not read any of them
    (a short SECRET_KEY or an unknown STORAGE_BACKEND would even stop it from starting)."""
    return {"SECRET_KEY": "short", "STORAGE_BACKEND": "nowhere", "UPLOAD_DIR": str(data / "not-here"),
            "MAX_UPLOAD_SIZE": "1", "API_TOKENS": "intruder:intruder-token-0123456789"}


@dataclass
class HostApp:
    url: str
    data: Path
    process: subprocess.Popen
    log: Path

    def signed_in(self, user: str = "ann") -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=30)
        passwords = {"ann": "correct horse", "ben": "battery staple"}
        assert client.post("/login", data={"user": user, "password": passwords[user]}).status_code == 302
        return client


def csrf_of(client: httpx.Client, prefix: str) -> str:
    page = client.get(f"{prefix}/")
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostApp]:
    data = tmp_path_factory.mktemp("host-app")
    port = free_port()
    env = {**os.environ, "HOST_APP_DATA": str(data), "HOST_APP_SECRET": "host-secret-0123456789abcdef",
           **foreign_environment(data)}
    log = data / "hypercorn.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "examples.host_app:app"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/files/healthz", process)
    except RuntimeError as error:
        process.kill()
        raise RuntimeError(f"{error}\n{log.read_text()}") from None
    running = HostApp(url, data, process, log)
    yield running
    if process.poll() is None:
        process.kill()
        process.wait()


def test_host_routes_error_pages_and_json_provider_are_untouched(host: HostApp) -> None:
    client = httpx.Client(base_url=host.url)
    assert client.get("/").text == "<h1>Host home</h1><p>Not signed in</p>"
    status = client.get("/api/status")
    assert status.json() == {"host": True, "started": True, "price": "9.99"}  # the host's JSON provider
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and missing.text == "<h1>Host: nothing here</h1>"
    # the service's own errors stay problem+json under its prefix, whatever the host does with 404
    unknown = client.get("/files/api/files/doesnotexist", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401
    assert unknown.headers["content-type"] == "application/problem+json"
    for path in ("/files/api/no/such/route", "/files/api/", "/scratch/api/nothing"):  # past every route too
        nowhere = client.get(path)
        assert nowhere.status_code == 404 and nowhere.headers["content-type"] == "application/problem+json"
        assert nowhere.json()["detail"] == f"there is no API route {path}"
    wrong_method = client.delete("/files/api/upload")
    assert wrong_method.status_code == 405 and wrong_method.headers["content-type"] == "application/problem+json"
    assert wrong_method.headers["allow"] == "OPTIONS, POST, PUT"


def test_upload_list_download_with_the_hosts_login(host: HostApp) -> None:
    anonymous = httpx.Client(base_url=host.url)
    assert anonymous.get("/files/api/files").status_code == 401
    client = host.signed_in("ann")
    csrf = csrf_of(client, "/files")
    uploaded = client.post("/files/api/upload", files={"file": ("notes.txt", b"hello host")},
                           headers={"X-CSRF-Token": csrf})
    assert uploaded.status_code == 201, uploaded.text
    (file,) = uploaded.json()["files"]
    assert file["url"] == f"/files/api/files/{file['id']}/content"
    assert client.get(file["url"]).content == b"hello host"
    listed = client.get("/files/api/files").json()["files"]
    assert [item["id"] for item in listed] == [file["id"]]
    assert client.get("/").text == "<h1>Host home</h1><p>Hello ann</p>"  # the host's session key is intact
    # another host user is another owner
    ben = host.signed_in("ben")
    assert ben.get("/files/api/files").json()["files"] == []
    assert ben.get(file["url"]).status_code == 404
    # without the CSRF token a cookie-authenticated upload is refused and nothing is stored
    refused = client.post("/files/api/upload", files={"file": ("x.txt", b"x")})
    assert refused.status_code == 403
    assert len(client.get("/files/api/files").json()["files"]) == 1


def test_the_hosts_own_page_uploads_with_the_csrf_token_the_service_gives_it(host: HostApp) -> None:
    client = host.signed_in("ben")
    page = client.get("/notes")
    assert page.status_code == 200
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)
    assert '"/files/api/upload"' in page.text and '"X-CSRF-Token"' in page.text

    def names() -> list[str]:
        return sorted(item["filename"] for item in client.get("/files/api/files").json()["files"])

    before = names()
    note = {"file": ("note.txt", b"from the host's page")}
    refused = client.post("/files/api/upload", files=note)
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    assert client.post("/files/api/upload", files=note, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert names() == before
    stored = client.post("/files/api/upload", files=note, headers={"X-CSRF-Token": token})
    assert stored.status_code == 201, stored.text
    as_field = client.post("/files/api/upload", data={"csrf_token": token}, files={"file": ("form.txt", b"form")})
    assert as_field.status_code == 201, as_field.text  # or as the form field, sent before the file parts
    assert names() == sorted([*before, "form.txt", "note.txt"])


def test_the_hosts_own_page_uploads_from_a_browser(host: HostApp, contexts) -> None:
    from playwright.sync_api import expect

    context = contexts()
    signed_in = context.request.post(host.url + "/login", form={"user": "ben", "password": "battery staple"},
                                     max_redirects=0)
    assert signed_in.status == 302  # the host's session cookie is now the browser's
    page = context.new_page()
    page.goto(host.url + "/notes")
    page.set_input_files("input[name=file]", files=[{"name": "browser.txt", "mimeType": "text/plain",
                                                     "buffer": b"from chromium"}])
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#answer")).to_have_text("stored")
    listed = host.signed_in("ben").get("/files/api/files").json()["files"]
    assert "browser.txt" in [item["filename"] for item in listed]


def test_the_environment_does_not_configure_the_hosts_services(host: HostApp) -> None:
    """The fixture set MAX_UPLOAD_SIZE=1, UPLOAD_DIR, API_TOKENS ... in the host's environment: all ignored."""
    client = host.signed_in("ann")
    large = client.post("/files/api/upload", files={"file": ("two.bin", b"x" * 2)},
                        headers={"X-CSRF-Token": csrf_of(client, "/files")})
    assert large.status_code == 201, large.text
    intruder = httpx.get(host.url + "/files/api/files", headers={"Authorization": "Bearer intruder-token-0123456789"})
    assert intruder.status_code == 401
    assert not (host.data / "not-here").exists() and object_files(host.data / "files")


def test_two_instances_keep_their_own_files_plugins_and_settings(host: HostApp) -> None:
    client = host.signed_in("ann")
    files_csrf, scratch_csrf = csrf_of(client, "/files"), csrf_of(client, "/scratch")
    pdf = {"file": ("paper.pdf", b"%PDF-1.4 fake", "application/pdf")}
    stored = client.post("/files/api/upload", files=pdf, headers={"X-CSRF-Token": files_csrf})
    assert stored.status_code == 201
    refused = client.post("/scratch/api/upload", files=pdf, headers={"X-CSRF-Token": scratch_csrf})
    assert refused.status_code == 422 and "no PDFs" in refused.json()["detail"]  # only scratch has NoPDFs
    big = {"file": ("big.bin", b"x" * 2048)}
    assert client.post("/scratch/api/upload", files=big, headers={"X-CSRF-Token": scratch_csrf}).status_code == 413
    assert client.post("/files/api/upload", files=big, headers={"X-CSRF-Token": files_csrf}).status_code == 201
    small = client.post("/scratch/api/upload", files={"file": ("s.txt", b"small")},
                        headers={"X-CSRF-Token": scratch_csrf})
    assert small.status_code == 201
    (scratch_file,) = small.json()["files"]
    assert scratch_file["url"].startswith("/scratch/api/files/")
    scratch_ids = [item["id"] for item in client.get("/scratch/api/files").json()["files"]]
    files_ids = [item["id"] for item in client.get("/files/api/files").json()["files"]]
    assert scratch_ids == [scratch_file["id"]]
    assert scratch_file["id"] not in files_ids
    assert client.get(f"/files/api/files/{scratch_file['id']}").status_code == 404
    assert object_files(host.data / "scratch") and object_files(host.data / "files")
    # each CSRF token belongs to its own instance
    crossed = client.post("/scratch/api/upload", files={"file": ("t.txt", b"t")}, headers={"X-CSRF-Token": files_csrf})
    assert crossed.status_code == 403


def test_host_templates_override_and_extend_the_defaults(host: HostApp) -> None:
    client = host.signed_in("ann")
    page = client.get("/files/").text
    assert '<nav class="host-nav">' in page  # the host's upload_service/index.html...
    assert "Signed in as ann" in page  # ...extends default:upload_service/index.html (super() of its block)
    assert 'action="/files/api/upload"' in page  # ...whose other blocks stay the service's, under the prefix


def test_each_instance_documents_its_own_api_under_its_prefix(host: HostApp) -> None:
    from openapi_spec_validator import validate

    files = httpx.get(host.url + "/files/api/openapi.json").json()
    scratch = httpx.get(host.url + "/scratch/api/openapi.json").json()
    validate(files)
    assert "/files/api/upload" in files["paths"] and "/scratch/api/upload" in scratch["paths"]
    assert all(path.startswith("/files/") for path in files["paths"])
    assert all(path.startswith("/scratch/") for path in scratch["paths"])
    assert "/api/status" not in files["paths"]  # the host's own routes are not the service's


def test_background_tasks_follow_the_hosts_serving_lifecycle(host: HostApp) -> None:
    beat = host.data / "heartbeat"
    deadline = time.monotonic() + 5
    while not (beat.exists() and beat.read_text() == "running") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert beat.read_text() == "running"
    host.process.send_signal(signal.SIGTERM)
    host.process.wait(10)
    assert beat.read_text() == "stopped", host.log.read_text()
