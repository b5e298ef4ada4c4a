"""A real OpenID Provider for the tests: ``oidc-provider`` from npm (tests/oidc/provider.mjs) under node, on
127.0.0.1, and the steps a person takes on it (its devInteractions login and consent forms), over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from .servers import ROOT, free_port, refuse_in_fast_tests

SCRIPT = ROOT / "tests" / "oidc" / "provider.mjs"
API_AUDIENCE = "https://uploads.test/api"
ACCOUNTS = {"ada": {"email": "ada@example.org", "groups": ["admins", "staff"]},
            "bob": {"email": "bob@elsewhere.test", "groups": ["staff"]}}
NATIVE_CLIENT = {"redirect_uris": ["http://127.0.0.1/login/test/authorized"], "application_type": "native",
                 "token_endpoint_auth_method": "client_secret_basic"}
FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


@dataclass
class Client:
    client_id: str
    client_secret: str

    def metadata(self) -> dict:
        """As a static client of the provider: a native one, whose loopback redirect URI is good on any port."""
        return {"client_id": self.client_id, "client_secret": self.client_secret, **NATIVE_CLIENT}


@dataclass
class OpenIDProvider:
    issuer: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @classmethod
    def start(cls, log_dir: Path, port: int | None = None, key_id: str = "key-1",
              clients: tuple[Client, ...] = ()) -> OpenIDProvider:
        node = shutil.which("node")
        if node is None or not (ROOT / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError("node and oidc-provider are needed: run scripts/build-assets (npm ci) first")
        refuse_in_fast_tests("an OpenID Provider")
        port = port or free_port()
        log_path = log_dir / f"oidc-provider-{port}-{key_id}.log"
        env = {"PATH": "/usr/bin:/bin", "PORT": str(port), "KEY_ID": key_id, "API_AUDIENCE": API_AUDIENCE,
               "ACCOUNTS": json.dumps(ACCOUNTS), "CLIENTS": json.dumps([client.metadata() for client in clients])}
        process = subprocess.Popen([node, str(SCRIPT)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=log_path.open("wb"), text=True)
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until listening, or EOF when it died
        if not line.startswith("ready "):
            process.kill()
            raise RuntimeError(f"oidc-provider did not start: {line!r}\n{log_path.read_text(errors='replace')}")
        return cls(line.split()[1], port, process, log_path)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def register(self, path: str = "/login/test/authorized") -> Client:
        """A client of its own for one service under test (dynamic registration). A native client: its loopback
        redirect URI ``http://127.0.0.1<path>`` is good on any port (RFC 8252), so it is made before the service."""
        metadata = {**NATIVE_CLIENT, "redirect_uris": [f"http://127.0.0.1{path}"]}
        answer = httpx.post(f"{self.issuer}/reg", json=metadata, timeout=10)
        answer.raise_for_status()
        return Client(answer.json()["client_id"], answer.json()["client_secret"])

    def settings(self, client: Client, name: str = "test", **extra: str) -> dict[str, str]:
        """The service's settings for ``client`` as provider ``name``."""
        prefix = f"OIDC_{name.upper()}_"
        return {"OIDC_PROVIDERS": name, f"{prefix}ISSUER": self.issuer, f"{prefix}CLIENT_ID": client.client_id,
                f"{prefix}CLIENT_SECRET": client.client_secret, **{prefix + key.upper(): value
                                                                   for key, value in extra.items()}}


def submit_forms(browser: httpx.Client, answer: httpx.Response, login: str) -> httpx.Response:
    """Follow the provider's redirects, login and consent forms until it sends the browser elsewhere."""
    provider = answer.url.copy_with(path="/", query=None, fragment=None)
    for _ in range(10):
        if answer.is_redirect:
            target = answer.url.join(answer.headers["location"])
            if target.copy_with(path="/", query=None, fragment=None) != provider:
                return answer
            answer = browser.get(target)
            continue
        match = FORM_ACTION.search(answer.text)
        assert match, f"no form on the provider's page ({answer.status_code}): {answer.text[:500]}"
        prompt = re.search(r'name="prompt" value="(\w+)"', answer.text)
        form = {"prompt": prompt.group(1) if prompt else "login", "login": login, "password": "any"}
        answer = browser.post(answer.url.join(unescape(match.group(1))), data=form)
    raise AssertionError("the provider kept the browser")


def start_sign_in(browser: httpx.Client, service_url: str, name: str = "test") -> httpx.Response:
    """``GET /login/<name>`` on the service: the redirect to the provider's authorization endpoint."""
    answer = browser.get(f"{service_url}/login/{name}")
    assert answer.status_code == 302, answer.text
    return answer


def sign_in(browser: httpx.Client, service_url: str, login: str, name: str = "test") -> httpx.Response:
    """The whole browser sign-in; returns the service's answer to the callback (302 to / when it worked)."""
    first = start_sign_in(browser, service_url, name)
    back = submit_forms(browser, browser.get(first.headers["location"]), login)
    return browser.get(back.headers["location"])


def tokens_for(provider: OpenIDProvider, client: Client, login: str, scope: str = "openid email groups api",
               redirect_uri: str = "http://127.0.0.1/login/test/authorized") -> dict:
    """What the provider's token endpoint gives ``client`` after ``login`` signs in: the test as an OAuth client
    of its own (a CLI that got an access token for the upload API), PKCE and all."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        answer = browser.get(f"{provider.issuer}/auth", params={
            "response_type": "code", "client_id": client.client_id, "redirect_uri": redirect_uri, "scope": scope,
            "state": "s", "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256"})
        back = submit_forms(browser, answer, login)
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        answer = browser.post(f"{provider.issuer}/token", auth=(client.client_id, client.client_secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier})
    answer.raise_for_status()
    return answer.json()
