"""Browser sign-in with GitHub, end to end: a real server, the GitHub double, an HTTP client keeping cookies.

The tests of this module share one server and one double (each test signs in as its own GitHub user).
"""

from __future__ import annotations

import base64
import hashlib
import time

from .github_fixtures import github, server, shared  # noqa: F401 (fixtures)
from .github_helpers import (
    SESSION_COOKIE,
    at_github,
    browser,
    csrf_from,
    query,
    session_data,
    session_serializer,
    sign_in,
    signed_in_identity,
    start_sign_in,
)

EXCHANGE = "POST /login/oauth/access_token"




def test_sign_in_redirects_to_github_with_state_pkce_and_scope(server, github):
    github.add_user("redirected", email="redirected@example.com")
    client = browser(server)

    authorize_url = start_sign_in(client)

    assert authorize_url.startswith(f"{github.url}/login/oauth/authorize?")
    params = query(authorize_url)
    assert params["client_id"] == github.client_id
    assert params["response_type"] == "code"
    assert params["scope"] == "user:email"
    assert params["redirect_uri"] == f"{server.url}/login/authorized"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 20 and len(params["code_challenge"]) == 43
    pending = session_data(server, client)["upload_service.github_pending"]
    assert list(pending) == [params["state"]]  # the state waits in the session under a namespaced key


def test_whole_flow_signs_in_and_the_session_works(server, github):
    user = github.add_user("octocat", email="octocat@example.com")
    emails_before = github.count("GET /api/v3/user/emails")
    client = browser(server)

    callback = sign_in(client)

    assert callback.status_code == 302 and callback.headers["Location"] == "/"
    assert "Signed in as octocat" in client.get("/").text
    assert signed_in_identity(server, client) == {
        "id": f"github:{user.id}", "name": "octocat", "provider": "github", "email": "octocat@example.com"}
    assert "upload_service.github_pending" not in session_data(server, client)  # the state was used up
    assert client.get("/api/files").status_code == 200
    # the code was exchanged with the PKCE verifier whose S256 digest went to GitHub, and with the client secret
    exchange = github.token_requests[-1]
    digest = hashlib.sha256(exchange["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == github.authorize_requests[-1]["code_challenge"]
    assert exchange["client_secret"] == github.client_secret
    assert github.count("GET /api/v3/user/emails") == emails_before  # the email was public: no second call


def test_private_email_is_read_from_user_emails(server, github):
    github.add_user("hidden", private_email="hidden@example.net")
    emails_before = github.count("GET /api/v3/user/emails")
    client = browser(server)

    assert sign_in(client).status_code == 302

    assert signed_in_identity(server, client)["email"] == "hidden@example.net"
    assert github.count("GET /api/v3/user/emails") == emails_before + 1


def test_get_login_also_redirects_to_github(server, github):
    response = browser(server).get("/login")

    assert response.status_code == 302
    assert response.headers["Location"].startswith(f"{github.url}/login/oauth/authorize?")


def test_login_form_without_csrf_token_is_refused(server, github):
    client = browser(server)
    client.get("/")
    authorize_before = github.count("GET /login/oauth/authorize")

    response = client.post("/login", data={"csrf_token": "forged"})

    assert response.status_code == 403
    assert "sign-in form was out of date" in response.text
    assert "upload_service.github_pending" not in session_data(server, client)
    assert github.count("GET /login/oauth/authorize") == authorize_before


def test_denied_authorization_ends_on_a_page_without_session(server, github):
    github.add_user("denier")
    github.deny = True
    exchanges_before = github.count(EXCHANGE)
    client = browser(server)

    response = sign_in(client)

    assert response.status_code == 403
    assert "text/html" in response.headers["Content-Type"]
    assert "Sign-in failed" in response.text and "was not granted" in response.text
    assert signed_in_identity(server, client) is None
    assert client.get("/api/files").status_code == 401
    assert github.count(EXCHANGE) == exchanges_before


def test_tampered_state_is_refused_without_asking_github(server, github):
    github.add_user("tamperer")
    client = browser(server)
    callback = at_github(client, start_sign_in(client))
    state = query(callback)["state"]
    exchanges_before = github.count(EXCHANGE)

    response = client.get(callback.replace(f"state={state}", f"state={state[:-2]}xx"))

    assert response.status_code == 400 and "not valid here" in response.text
    assert signed_in_identity(server, client) is None
    assert github.count(EXCHANGE) == exchanges_before


def test_missing_state_is_refused(server, github):
    github.add_user("stateless")
    client = browser(server)
    callback = at_github(client, start_sign_in(client))

    response = client.get("/login/authorized", params={"code": query(callback)["code"]})

    assert response.status_code == 400
    assert signed_in_identity(server, client) is None


def test_replayed_callback_is_refused(server, github):
    github.add_user("replayer")
    client = browser(server)
    callback = at_github(client, start_sign_in(client))
    exchanges_before = github.count(EXCHANGE)
    assert client.get(callback).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/logout").text)})
    assert signed_in_identity(server, client) is None

    replayed = client.get(callback)
    elsewhere = browser(server)
    stolen = elsewhere.get(callback)  # the same link opened in another browser

    assert replayed.status_code == 400 and "already used" in replayed.text
    assert stolen.status_code == 400
    assert signed_in_identity(server, client) is None and signed_in_identity(server, elsewhere) is None
    assert github.count(EXCHANGE) == exchanges_before + 1


def test_token_endpoint_error_answer_ends_on_a_page(server, github):
    github.add_user("unlucky")
    github.token_error = "bad_verification_code"
    client = browser(server)

    response = sign_in(client)

    assert response.status_code == 400
    assert "bad_verification_code" in response.text and "incorrect or expired" in response.text
    assert signed_in_identity(server, client) is None
    assert client.get("/api/files").status_code == 401


def test_github_down_during_callback_gives_503_page(server, github):
    github.add_user("patient")
    client = browser(server)
    callback = at_github(client, start_sign_in(client))
    github.down = True

    response = client.get(callback)

    assert response.status_code == 503 and "could not be reached" in response.text
    assert signed_in_identity(server, client) is None


def test_renamed_account_keeps_its_identity(server, github):
    user = github.add_user("renamer")
    first = browser(server)
    sign_in(first)
    upload = first.post("/api/upload", json=[{"filename": "a.txt", "content": "aGk="}],
                        headers={"X-CSRF-Token": csrf_from(first.get("/logout").text)})
    assert upload.status_code == 201, upload.text

    github.rename("renamer", "renamed")
    second = browser(server)
    sign_in(second)

    assert signed_in_identity(server, second) == {
        "id": f"github:{user.id}", "name": "renamed", "provider": "github", "email": "renamer@users.example"}
    assert [f["filename"] for f in second.get("/api/files").json()["files"]] == ["a.txt"]


def test_wrong_client_secret_is_reported(make_server, github_double):
    github_double.add_user("octocat")
    server = make_server(**{**github_double.settings(), "github_client_secret": "not-the-secret"})
    client = browser(server)

    response = sign_in(client)

    assert response.status_code == 400 and "incorrect_client_credentials" in response.text
    assert signed_in_identity(server, client) is None


def test_expired_state_is_refused(server, github):
    github.add_user("slowpoke")
    client = browser(server)
    callback = at_github(client, start_sign_in(client))
    state = query(callback)["state"]
    data = session_data(server, client)
    data["upload_service.github_pending"][state][1] = time.time() - 1  # ten minutes have passed
    client.cookies.set(SESSION_COOKIE, session_serializer(server).dumps(data), domain="127.0.0.1")
    exchanges_before = github.count(EXCHANGE)

    response = client.get(callback)

    assert response.status_code == 400 and "expired" in response.text
    assert signed_in_identity(server, client) is None
    assert github.count(EXCHANGE) == exchanges_before
