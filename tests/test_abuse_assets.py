"""Issue 18, findings 9 and 10, as attacks on a real server: what a download is served as (on the service and
on S3's presigned URLs), the UI's scripts when the front-end bundle is missing, and the smaller holes of 10
(``DEV=1`` without ``DEV_TOKEN``, the OAuth callback from a forged ``Host``, a part header of many MB)."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import upload_service.multipart
import upload_service.ui
from upload_service.assets import MANIFEST, STATIC_DIR, Assets

from .browser import dev_client, dev_settings
from .conftest import server_starter
from .github_helpers import csrf_from, query
from .servers import TOKENS, free_port, wait_until_up
from .test_security_headers import image, policy

MiB = 1024 * 1024
NEUTRAL = "application/octet-stream"


def _served(answer: httpx.Response) -> tuple[str, str]:
    """(media type without parameters, Content-Disposition) of a download."""
    return answer.headers["content-type"].split(";")[0].strip(), answer.headers["content-disposition"]


# -- finding 9: what a download is served as ----------------------------------------------------------------

ACTIVE = [  # types a browser would run or parse as a document, and types nobody has vouched for
    ("feed.xml", "application/foo+xml", b"<x:script xmlns:x='http://www.w3.org/1999/xhtml'>alert(1)</x:script>"),
    ("atom.xml", "application/atom+xml", b"<feed xmlns='http://www.w3.org/2005/Atom'/>"),
    ("style.xsl", "text/xsl", b"<xsl:stylesheet version='1.0' xmlns:xsl='http://www.w3.org/1999/XSL/Transform'/>"),
    ("picture.xml", "image/foo+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
    ("page.css", "text/css", b"body { background: url(https://attacker.example/x) }"),
    ("thing.new", "application/x-not-yet-invented", b"<script>alert(1)</script>"),
    ("x.html", "text/html", b"<script>alert(document.domain)</script>"),
]
INERT = [  # types no browser runs: served as what they are (always as an attachment, but for raster images)
    ("notes.txt", "text/plain"), ("report.pdf", "application/pdf"), ("song.mp3", "audio/mpeg"),
    ("clip.mp4", "video/mp4"), ("bundle.zip", "application/zip"), ("scan.bmp", "image/bmp"),
    ("blob.bin", NEUTRAL),
]


@pytest.fixture(scope="module")
def ui_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    running = server_starter(request, tmp_path_factory, "local")(**dev_settings())
    yield running
    running.stop()


@pytest.mark.parametrize(("name", "claimed", "data"), ACTIVE, ids=[entry[1] for entry in ACTIVE])
def test_a_type_not_known_to_be_inert_is_downloaded_as_bytes(ui_server, name: str, claimed: str,
                                                             data: bytes) -> None:
    """Attack: upload an XML-based document (``application/foo+xml``, ``text/xsl``, ``image/foo+xml``) or a type
    the denylist never heard of, and have the download served with that type, for a browser to parse. Instead:
    only types known to be inert keep their label; everything else is ``application/octet-stream``."""
    client = dev_client(ui_server)
    stored = client.put(f"/api/files/{name}", content=data, headers={"Content-Type": claimed}).json()
    assert stored["content_type"] == claimed  # stored as claimed (no content-type policy): the label is the risk
    for answer in (client.get(stored["url"]), client.head(stored["url"])):
        media, disposition = _served(answer)
        assert media == NEUTRAL, (claimed, answer.headers["content-type"])
        assert disposition.startswith("attachment;") and answer.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(("name", "claimed"), INERT, ids=[entry[1] for entry in INERT])
def test_an_inert_type_keeps_its_label_as_an_attachment(ui_server, name: str, claimed: str) -> None:
    """The allowlist is not a blanket: what a browser only shows or saves keeps its type (still an attachment)."""
    client = dev_client(ui_server)
    stored = client.put(f"/api/files/{name}", content=b"\x00not really that\x01", headers={"Content-Type": claimed})
    media, disposition = _served(client.get(stored.json()["url"]))
    assert media == claimed and disposition.startswith("attachment;")


def test_s3_presigned_downloads_are_served_as_the_service_serves_them(make_server, s3_server) -> None:
    """Attack: with ``S3_PRESIGNED_DOWNLOADS``, upload HTML (or SVG, or XML) and follow the redirect: S3 served it
    as ``text/html``, and S3 cannot send ``nosniff`` or a sandboxing CSP. Instead: the presigned URL carries the
    type and disposition the service's own download decides (``application/octet-stream``, attachment), and a
    real raster image stays inline as it is on the service."""
    bucket = s3_server.bucket()
    presigned = make_server(**bucket.settings(), s3_presigned_downloads="true")
    streamed = make_server(**bucket.settings())  # the same bucket, downloads streamed by the service
    client = presigned.client()
    files = {name: (claimed, data) for name, claimed, data in ACTIVE}
    files |= {"x.svg": ("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"),
              "real.png": ("image/png", image("PNG")), "fake.png": ("image/png", b"<html><script>1</script>"),
              "report.pdf": ("application/pdf", b"%PDF-1.4 not much"), "notes.txt": ("text/plain", b"text")}
    served = {}
    for name, (claimed, data) in files.items():
        stored = client.put(f"/api/files/{name}", content=data, headers={"Content-Type": claimed}).json()
        redirect = client.get(stored["url"])
        assert redirect.status_code == 302, (name, redirect.status_code)
        direct = httpx.get(redirect.headers["location"])
        assert direct.status_code == 200 and direct.content == data
        own = streamed.client().get(stored["url"])
        assert own.status_code == 200 and own.content == data
        assert _served(direct) == _served(own), name
        served[name] = _served(direct)
    for name, (media, disposition) in served.items():
        inert = files[name][0] in ("image/png", "application/pdf", "text/plain")
        assert media == (files[name][0] if inert else NEUTRAL), (name, media)
        assert disposition.startswith("inline;" if name == "real.png" else "attachment;"), (name, disposition)


# -- finding 10: the UI without its bundle --------------------------------------------------------------------


@pytest.fixture
def server_without_bundle(make_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A server whose package has no ``static/vendor/`` (a wheel built without npm): its UI finds no bundle."""
    static = tmp_path / "static"
    shutil.copytree(STATIC_DIR, static, ignore=shutil.ignore_patterns("vendor"))
    monkeypatch.setattr(upload_service.ui, "Assets", functools.partial(Assets, static_dir=static))
    return make_server(**dev_settings())


def test_without_the_bundle_the_csp_allows_exactly_the_pinned_files(server_without_bundle) -> None:
    """Attack: where the bundle is missing, ``script-src`` allowed all of ``https://cdn.jsdelivr.net``, so any
    script of any npm package (an old htmx with a known hole, anything an attacker publishes) could run on the
    page. Instead: ``script-src`` names the exact pinned file URLs with their SRI hashes, and each script tag
    carries the same hash."""
    manifest = json.loads(MANIFEST.read_text())
    page = dev_client(server_without_bundle).get("/")
    scripts = policy(page)["script-src"].split()
    assert "https://cdn.jsdelivr.net" not in scripts and not [s for s in scripts if s.endswith(("/", ".net"))]
    for entry in manifest.values():
        assert entry["cdn"] in scripts and f"'{entry['integrity']}'" in scripts, (entry, scripts)
        assert f'<script src="{entry["cdn"]}" integrity="{entry["integrity"]}"' in page.text
    assert set(scripts) == {"'self'", *(entry["cdn"] for entry in manifest.values()),
                            *(f"'{entry['integrity']}'" for entry in manifest.values())}


def test_a_ui_served_without_its_bundle_says_so_at_start_up(make_server, monkeypatch, tmp_path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A wheel built without npm served a UI that needs the internet, and said so only in a line about a script
    nobody runs there. Instead: one WARNING at start-up naming the missing files, the CDN the browsers will
    depend on, and how to get a bundled build."""
    static = tmp_path / "static"
    shutil.copytree(STATIC_DIR, static, ignore=shutil.ignore_patterns("vendor"))
    monkeypatch.setattr(upload_service.ui, "Assets", functools.partial(Assets, static_dir=static))
    caplog.set_level(logging.WARNING, logger="upload_service")
    make_server(**dev_settings())
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"
                and record.name == "upload_service.assets"]
    assert len(warnings) == 1, warnings
    assert "without its front-end bundle" in warnings[0] and "cdn.jsdelivr.net" in warnings[0]
    assert "htmx.min.js" in warnings[0] and "tus.min.js" in warnings[0] and "npm" in warnings[0]


# -- finding 10: DEV=1 without DEV_TOKEN ----------------------------------------------------------------------


@pytest.mark.process  # the command itself, with two worker processes
def test_dev_from_the_environment_without_a_token_starts_and_every_worker_shares_its_secrets(tmp_path) -> None:
    """``DEV=1`` in the environment (or ``.env``) without ``DEV_TOKEN`` crashed the command with a traceback after
    printing half its banner. Instead: the command generates the token (and the secret key), prints it, and
    every worker process uses the same ones, so the printed token and a dev sign-in work on any of them."""
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if key not in ("SECRET_KEY", "API_TOKENS", "DEV_TOKEN", "UPLOAD_DIR")}
    env.update(DEV="1", PORT=str(port), WORKERS="2", LOG_LEVEL="WARNING")
    log = tmp_path / "server.log"
    process = subprocess.Popen([sys.executable, "-m", "upload_service.cli"], cwd=tmp_path, env=env,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process, timeout=60)
        output = log.read_text()
        assert "Traceback" not in output
        token = re.search(r"API token\s+(\S+)", output).group(1)
        for attempt in range(8):  # new connections: the kernel spreads them over both workers
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
                assert client.put(f"/api/files/{attempt}.txt", content=b"hi").status_code == 201
        with httpx.Client(base_url=url) as browser:
            csrf = csrf_from(browser.get("/").text)
            assert browser.post("/login/dev", data={"csrf_token": csrf}).status_code == 303
        for _ in range(8):  # the session cookie, signed by one worker, is good on every worker
            with httpx.Client(base_url=url, cookies=browser.cookies) as again:
                assert "Sign in as the local developer" not in again.get("/").text
    finally:
        process.terminate()
        process.wait(10)
    assert "Traceback" not in log.read_text()


# -- finding 10: the OAuth callback URL -----------------------------------------------------------------------


def _start_github_sign_in(server, host: str | None = None, **headers: str) -> httpx.Response:
    client = server.client(None, follow_redirects=False)
    csrf = csrf_from(client.get("/").text)
    if host is not None:
        headers["Host"] = host
    return client.post("/login", data={"csrf_token": csrf}, headers=headers)


def test_the_oauth_callback_is_not_built_from_a_forged_host_header(make_server, github_double) -> None:
    """Attack: ``POST /login`` with ``Host: attacker.example``: the ``redirect_uri`` sent to GitHub named the
    attacker's host (a GitHub Enterprise or any provider that checks loosely sends the code there). Instead: the
    callback comes from ``PUBLIC_URL``, from a trusted proxy's headers, or (a local run) from a loopback
    ``Host``; a client's own ``Host`` naming anywhere else starts no sign-in."""
    server = make_server(**github_double.settings())
    forged = _start_github_sign_in(server, "attacker.example")
    assert "attacker.example" not in forged.headers.get("location", "")
    assert forged.status_code >= 400 and "PUBLIC_URL" in forged.text
    local = _start_github_sign_in(server)  # a local run, as the README starts it
    assert query(local.headers["location"])["redirect_uri"] == f"{server.url}/login/authorized"

    public = make_server(**github_double.settings(), public_url="https://uploads.example.org")
    for host in (None, "attacker.example"):
        started = _start_github_sign_in(public, host)
        assert query(started.headers["location"])["redirect_uri"] == "https://uploads.example.org/login/authorized"


def test_only_a_trusted_proxy_says_which_host_the_browser_asked_for(make_server, github_double) -> None:
    """``X-Forwarded-Host`` from a trusted proxy (``FORWARDED_ALLOW_IPS``) names the public host; from anyone
    else it is ignored like ``X-Forwarded-For``."""
    forwarded = {"X-Forwarded-Host": "uploads.example.org", "X-Forwarded-Proto": "https"}
    behind = make_server(**github_double.settings(), forwarded_allow_ips="127.0.0.1")
    started = _start_github_sign_in(behind, "uploads.example.org", **forwarded)
    assert query(started.headers["location"])["redirect_uri"] == "https://uploads.example.org/login/authorized"
    direct = make_server(**github_double.settings())
    refused = _start_github_sign_in(direct, "attacker.example", **{**forwarded, "X-Forwarded-Host": "attacker.example"})
    assert "attacker.example" not in refused.headers.get("location", "") and refused.status_code >= 400


# -- finding 10: part headers of many MB ---------------------------------------------------------------------


def test_a_part_header_of_many_megabytes_is_refused_at_once(make_server, monkeypatch) -> None:
    """Attack: a multipart part whose header line never ends. python-multipart bounds header lines only in recent
    versions (pyproject allows older ones), and the service kept what it was given in a buffer of its own, so the
    header grew in memory for as long as the client sent it. Instead: the service bounds part headers itself,
    whatever python-multipart is installed (here one without limits), and answers 400 after a few KiB."""
    from python_multipart.multipart import MultipartParser

    unbounded = functools.partial(MultipartParser, max_header_size=2**62, max_header_count=2**62)
    monkeypatch.setattr(upload_service.multipart, "MultipartParser", unbounded)  # as python-multipart < 0.0.2x
    server = make_server()
    declared, sending = 1024 * MiB, 64 * MiB  # declared beyond what the service lingers for after an early answer
    head = (f"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {declared}\r\n\r\n"
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nX-Filler: ").encode()
    answer, sent = _send_until_answered(server.url, head, sending, timeout=20)
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")), answer[:200]
    assert sent < 16 * MiB, f"the server read {sent} bytes of one part header before refusing it"


def _send_until_answered(url: str, head: bytes, total: int, timeout: float) -> tuple[bytes, int]:
    """Send ``head`` and then filler (``a``) up to ``total`` bytes, stopping once the server answers; the answer
    (empty if none came in ``timeout``) and how many bytes were sent."""
    host, port = url.rsplit("/", 1)[1].split(":")
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.setblocking(False)
        pending, sent, filler = head, 0, b"a" * (64 * 1024)
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 0.5)
            if readable:
                return _read_answer(sock, deadline), sent
            if writable:
                try:
                    count = sock.send(pending[: total - sent])
                except (BlockingIOError, InterruptedError):
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    return _read_answer(sock, deadline), sent
                sent += count
                pending = pending[count:] or filler
        return b"", sent


def _read_answer(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.5)
        if readable:
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return data
