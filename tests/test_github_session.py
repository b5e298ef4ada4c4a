"""The session a GitHub sign-in starts: cookie flags (Secure over https), CSRF on cookie writes, sign-out."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .github_helpers import SESSION_COOKIE, browser, csrf_from, hypercorn, self_signed, sign_in, signed_in_identity


def session_cookie_header(response: httpx.Response) -> str:
    cookies = [value for value in response.headers.get_list("set-cookie") if value.startswith(SESSION_COOKIE + "=")]
    assert cookies, "no session cookie was set"
    return cookies[-1]


def test_session_cookie_is_httponly_lax_and_not_secure_over_http(make_server, github_double):
    github_double.add_user("octocat")
    server = make_server(**github_double.settings())

    callback = sign_in(browser(server))

    flags = [part.strip().lower() for part in session_cookie_header(callback).split(";")]
    assert "httponly" in flags and "samesite=lax" in flags
    assert "secure" not in flags


def test_cookie_write_needs_the_csrf_token_and_bearer_does_not(make_server, github_double):
    github_double.add_user("octocat")
    server = make_server(**github_double.settings())
    client = browser(server)
    sign_in(client)
    body = [{"filename": "note.txt", "content": "aGk="}]

    refused = client.post("/api/upload", json=body)
    forged = client.post("/api/upload", json=body, headers={"X-CSRF-Token": "forged"})
    accepted = client.post("/api/upload", json=body, headers={"X-CSRF-Token": csrf_from(client.get("/logout").text)})
    token = server.client(None)
    token.headers["Authorization"] = f"Bearer {github_double.issue_token('octocat')}"
    by_token = token.post("/api/upload", json=body)

    assert refused.status_code == 403 and forged.status_code == 403
    detail = refused.json()["detail"]
    assert detail.startswith("missing or invalid CSRF token") and "X-CSRF-Token" in detail
    assert accepted.status_code == 201 and by_token.status_code == 201
    assert len(client.get("/api/files").json()["files"]) == 2


def test_logout_needs_post_with_csrf_and_ends_the_session(make_server, github_double):
    github_double.add_user("octocat")
    server = make_server(**github_double.settings())
    client = browser(server)
    sign_in(client)

    confirm = client.get("/logout")
    without_token = client.post("/logout")
    still_in = client.get("/api/files").status_code
    done = client.post("/logout", data={"csrf_token": csrf_from(confirm.text)})

    assert confirm.status_code == 200 and "<button" in confirm.text and 'action="/logout"' in confirm.text
    assert without_token.status_code == 403 and still_in == 200  # neither the page nor a forged post signs out
    assert done.status_code == 303 and done.headers["Location"] == "/"
    assert signed_in_identity(server, client) is None
    assert client.get("/api/files").status_code == 401
    assert 'action="/login"' in client.get("/").text


@pytest.fixture
def https_server(tmp_path: Path, github_double) -> Iterator[tuple[str, ssl.SSLContext | bool]]:
    """The stand-alone app served by Hypercorn over TLS (a self-signed certificate for 127.0.0.1)."""
    cert, key = self_signed(tmp_path)
    settings = {"secret_key": "test-secret-key-0123456789abcdef", **github_double.settings()}
    with hypercorn("upload_service.app:create_app()", tmp_path, settings, certfile=cert, keyfile=key) as running:
        yield running


@pytest.mark.process  # Hypercorn's own command, over TLS
def test_session_cookie_is_secure_over_https(https_server, github_double):
    url, trust = https_server
    github_double.add_user("octocat")
    with httpx.Client(base_url=url, verify=trust, follow_redirects=False) as client:
        page = client.get("/")
        start = client.post("/login", data={"csrf_token": csrf_from(page.text)})
        callback = client.get(client.get(start.headers["Location"]).headers["Location"])

        flags = [part.strip().lower() for part in session_cookie_header(callback).split(";")]
        assert callback.status_code == 302
        assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags
        assert start.headers["Location"].count("redirect_uri=https%3A%2F%2F127.0.0.1") == 1
        assert client.get("/api/files").status_code == 200
