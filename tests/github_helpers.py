"""What a browser does to sign in with GitHub, done with a real HTTP client that keeps cookies."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from quart import Quart
from quart.sessions import SecureCookieSessionInterface

from .github_double import GitHubDouble
from .servers import Server, free_port, refuse_in_fast_tests, start_in_process

REPO = Path(__file__).resolve().parent.parent

SESSION_COOKIE = "upload_service_session"


def browser(server: Server) -> httpx.Client:
    """A client without credentials that keeps cookies and, like a test, looks at every redirect itself."""
    return server.client(None, follow_redirects=False)


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


def start_sign_in(client: httpx.Client) -> str:
    """Press the sign-in page's GitHub button: the answer sends the browser to GitHub's authorize page."""
    page = client.get("/")
    assert 'action="/login"' in page.text
    response = client.post("/login", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 303, response.text
    return response.headers["Location"]


def at_github(client: httpx.Client, authorize_url: str) -> str:
    """GitHub's authorize page approves (or denies) and sends the browser back: the callback URL."""
    response = client.get(authorize_url)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def sign_in(client: httpx.Client) -> httpx.Response:
    """The whole flow; returns the callback's answer (a redirect to ``/`` when it worked)."""
    return client.get(at_github(client, start_sign_in(client)))


def query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def session_data(server: Server, client: httpx.Client) -> dict[str, Any]:
    """What the signed session cookie holds (decoded with the server's secret key, as the server does)."""
    raw = client.cookies.get(SESSION_COOKIE)
    return {} if raw is None else session_serializer(server).loads(raw)


def session_serializer(server: Server) -> Any:
    """The signing serializer of the server's session cookie (Quart's, with the server's secret key)."""
    app = Quart("decode")
    app.secret_key = server.env["SECRET_KEY"]
    return SecureCookieSessionInterface().get_signing_serializer(app)


def signed_in_identity(server: Server, client: httpx.Client) -> dict[str, Any] | None:
    return session_data(server, client).get("upload_service.identity")


@contextmanager
def hypercorn(app_path: str, tmp: Path, settings: dict[str, str], *, certfile: Path | None = None,
              keyfile: Path | None = None) -> Iterator[tuple[str, ssl.SSLContext | bool]]:
    """Serve ``app_path`` with Hypercorn on 127.0.0.1 (over TLS with a certificate); yields (url, verify)."""
    refuse_in_fast_tests("Hypercorn as a subprocess")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "UPLOAD_DIR": str(tmp / "uploads"), "LOG_LEVEL": "WARNING",
           **{name.upper(): value for name, value in settings.items()}}
    tls = ["--certfile", str(certfile), "--keyfile", str(keyfile)] if certfile else []
    process = subprocess.Popen([sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", *tls, app_path],
                               env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(certfile)) if certfile else True
    url = f"{'https' if certfile else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/", verify=verify, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{app_path} did not come up on {url}") from None
                time.sleep(0.05)
        yield url, verify
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def double_and_server(tmp: Path, **settings: str) -> Iterator[tuple[GitHubDouble, Server]]:
    """A GitHub double and a server pointed at it, for a test module to share (tests use their own users)."""
    double = GitHubDouble().start()
    server = start_in_process(tmp, **double.settings(), **settings)
    try:
        yield double, server
    finally:
        server.stop()
        double.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as files: the server's certificate and the client's one CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
