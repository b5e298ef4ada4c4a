"""OpenID Connect sign-in (plugins/oidc) through a real OpenID Provider: oidc-provider from npm under node.

A browser is an HTTP client that keeps cookies and follows each redirect itself, through the provider's own
login and consent forms. One provider for the session; each test's service registers a client of its own.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .github_helpers import csrf_from, session_data, signed_in_identity
from .oidc_provider import API_AUDIENCE, sign_in as oidc_sign_in, start_sign_in, submit_forms, tokens_for

PENDING = "upload_service.oidc_test_pending"


@pytest.fixture
def service(openid_provider, make_server):
    """A service with the session's provider as ``test``: ``make(**extra)`` adds ``OIDC_TEST_*`` settings."""
    def make(**extra: str):
        client = openid_provider.register()
        server = make_server(**openid_provider.settings(client, **extra))
        server.oidc_client = client
        return server
    return make


def browser_for(server) -> httpx.Client:
    return server.client(None, follow_redirects=False)


def session_cookie(browser: httpx.Client) -> str:
    return [cookie.value for cookie in browser.cookies.jar if cookie.name == "upload_service_session"][-1]


def upload_as_signed_in(server, browser: httpx.Client, name: str) -> dict:
    csrf = csrf_from(browser.get("/").text)
    answer = browser.put(f"/api/files/{name}", content=b"hello", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_sign_in_makes_an_oidc_identity_that_owns_its_uploads(service):
    server = service(title="Sign in with Test SSO")
    browser = browser_for(server)
    page = browser.get("/").text
    assert 'href="/login/test"' in page and "Sign in with Test SSO" in page  # the button

    callback = oidc_sign_in(browser, server.url, "ada")

    assert callback.status_code == 302 and callback.headers["location"] == "/"
    assert signed_in_identity(server, browser) == {
        "id": "oidc:test:ada", "name": "ada", "provider": "oidc:test", "email": "ada@example.org"}
    file = upload_as_signed_in(server, browser, "ada.txt")
    assert [f["id"] for f in browser.get("/api/files").json()["files"]] == [file["id"]]
    assert file["id"] not in [f["id"] for f in server.client("alice").get("/api/files").json()["files"]]
    other = browser_for(server)
    oidc_sign_in(other, server.url, "bob")
    assert signed_in_identity(server, other)["id"] == "oidc:test:bob"
    assert browser.get("/api/files").json()["files"] != other.get("/api/files").json()["files"]


def test_the_authorization_request_carries_pkce_state_and_nonce(service, openid_provider):
    server = service()
    browser = browser_for(server)

    location = start_sign_in(browser, server.url).headers["location"]

    assert location.startswith(f"{openid_provider.issuer}/auth?")
    params = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["redirect_uri"] == f"{server.url}/login/test/authorized"
    assert params["scope"] == "openid email profile"
    assert len(params["state"]) >= 20 and len(params["nonce"]) >= 20
    verifier, nonce, _expiry = session_data(server, browser)[PENDING][params["state"]]
    assert nonce == params["nonce"] and len(verifier) >= 43


def test_a_callback_works_once_and_only_in_the_browser_that_started_it(service):
    server = service()
    browser = browser_for(server)
    first = start_sign_in(browser, server.url)
    back = submit_forms(browser, browser.get(first.headers["location"]), "ada")
    callback_url = back.headers["location"]

    stranger = browser_for(server)
    assert stranger.get(callback_url).status_code == 400  # another browser: its session holds no such state
    assert signed_in_identity(server, stranger) is None
    assert browser.get(callback_url).status_code == 302
    assert signed_in_identity(server, browser)["id"] == "oidc:test:ada"
    assert PENDING not in session_data(server, browser)

    browser.cookies.delete("upload_service_session")
    again = browser_for(server)
    start_sign_in(again, server.url)  # a fresh pending sign-in, with another state
    replay = again.get(callback_url)
    assert replay.status_code == 400 and "already used" in replay.text
    assert signed_in_identity(server, again) is None


def test_allowed_keeps_out_whoever_no_rule_admits(service):
    server = service(allowed="groups=admins,email_domain=example.net", scopes="openid email profile groups")
    ada, bob = browser_for(server), browser_for(server)

    assert oidc_sign_in(ada, server.url, "ada").status_code == 302  # in the admins group
    refused = oidc_sign_in(bob, server.url, "bob")  # staff only, and an address elsewhere

    assert refused.status_code == 403 and "may not use this service" in refused.text
    assert signed_in_identity(server, ada)["id"] == "oidc:test:ada"
    assert signed_in_identity(server, bob) is None


def test_access_tokens_are_bearer_tokens_when_bearer_is_on(service, openid_provider):
    server = service(bearer="true", audience=API_AUDIENCE)
    tokens = tokens_for(openid_provider, server.oidc_client, "ada")
    api = server.client(None)

    answer = api.put("/api/files/cli.txt", content=b"from a script",
                     headers={"Authorization": f"Bearer {tokens['access_token']}"})

    assert answer.status_code == 201, answer.text
    browser = browser_for(server)
    oidc_sign_in(browser, server.url, "ada")
    assert answer.json()["id"] in [f["id"] for f in browser.get("/api/files").json()["files"]]  # same owner
    id_token = api.get("/api/files", headers={"Authorization": f"Bearer {tokens['id_token']}"})
    assert id_token.status_code == 401  # an ID token is no access token
    forged = tokens["access_token"][:-4] + ("AAAA" if not tokens["access_token"].endswith("AAAA") else "BBBB")
    assert api.get("/api/files", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_access_tokens_are_refused_without_bearer_or_for_another_audience(service, openid_provider):
    off = service()
    elsewhere = service(bearer="true", audience="https://another.test/api")

    for server in (off, elsewhere):
        token = tokens_for(openid_provider, server.oidc_client, "ada")["access_token"]
        answer = server.client(None).get("/api/files", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, answer.text


def test_bearer_tokens_of_someone_allowed_keeps_out_are_403(service, openid_provider):
    server = service(bearer="true", audience=API_AUDIENCE, allowed="groups=admins")
    api = server.client(None)

    for login, status in (("ada", 200), ("bob", 403)):
        token = tokens_for(openid_provider, server.oidc_client, login)["access_token"]
        assert api.get("/api/files", headers={"Authorization": f"Bearer {token}"}).status_code == status


def test_changing_allowed_ends_the_sessions_started_under_other_rules(service):
    before = service()
    browser = browser_for(before)
    oidc_sign_in(browser, before.url, "bob")
    assert browser.get("/api/files").status_code == 200
    after = service(allowed="groups=admins")  # the same secret key and provider name: the operator changed a rule

    cookie = {"Cookie": f"upload_service_session={session_cookie(browser)}"}

    assert after.client(None).get("/api/files", headers=cookie).status_code == 401
    assert before.client(None).get("/api/files", headers=cookie).status_code == 200
