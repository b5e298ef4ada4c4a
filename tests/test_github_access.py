"""ALLOWED_USERS and ALLOWED_ORGS, for GitHub sign-in (a page) and GitHub tokens (a problem), end to end."""

from __future__ import annotations

from .conftest import object_files
from .github_helpers import browser, sign_in, signed_in_identity


def bearer(server, token: str):
    client = server.client(None)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_allowed_users_let_listed_logins_in_by_browser_and_token(make_server, github_double):
    github_double.add_user("Octocat")
    server = make_server(**github_double.settings(), allowed_users="someone, octocat")
    client = browser(server)

    assert sign_in(client).status_code == 302
    assert signed_in_identity(server, client)["name"] == "Octocat"  # logins compare without case
    assert bearer(server, github_double.issue_token("Octocat")).get("/api/files").status_code == 200


def test_unlisted_user_gets_a_403_page_and_no_session(make_server, github_double):
    github_double.add_user("mallory")
    server = make_server(**github_double.settings(), allowed_users="octocat")
    client = browser(server)

    response = sign_in(client)

    assert response.status_code == 403
    assert "@mallory may not use this service" in response.text
    assert "not on the list of allowed users" in response.text
    assert signed_in_identity(server, client) is None
    assert client.get("/api/files").status_code == 401


def test_unlisted_token_owner_gets_a_403_problem(make_server, github_double):
    github_double.add_user("mallory")
    server = make_server(**github_double.settings(), allowed_users="octocat")

    response = bearer(server, github_double.issue_token("mallory")).put("/api/files/x.txt", content=b"x")

    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "@mallory may not use this service" in response.json()["detail"]
    assert not object_files(server.upload_dir / "objects")


def test_allowed_users_do_not_apply_to_static_api_tokens(make_server, github_double):
    server = make_server(**github_double.settings(), allowed_users="octocat")

    assert server.client("alice").get("/api/files").status_code == 200


def test_public_member_of_an_allowed_org_gets_in(make_server, github_double):
    github_double.add_user("octocat", public_orgs=tuple(f"org{n}" for n in range(120)) + ("uploaders",))
    server = make_server(**github_double.settings(), allowed_orgs="Uploaders")
    client = browser(server)

    assert sign_in(client).status_code == 302  # found on the second page of the organisations
    assert signed_in_identity(server, client)["name"] == "octocat"
    assert bearer(server, github_double.issue_token("octocat")).get("/api/files").status_code == 200
    assert github_double.count("GET /api/v3/users/octocat/orgs") == 4  # two pages, for sign-in and for the token


def test_private_member_is_told_to_make_membership_public(make_server, github_double):
    github_double.add_user("shy", private_orgs=("uploaders",), public_orgs=("other",))
    server = make_server(**github_double.settings(), allowed_orgs="uploaders")
    client = browser(server)

    page = sign_in(client)
    problem = bearer(server, github_double.issue_token("shy")).get("/api/files")

    assert page.status_code == 403 and "make your membership public" in page.text.replace("\n", " ")
    assert "not on the list of allowed users" not in page.text
    assert problem.status_code == 403 and "public member of an allowed organisation" in problem.json()["detail"]
    assert signed_in_identity(server, client) is None


def test_listed_user_needs_no_org_lookup(make_server, github_double):
    github_double.add_user("octocat")
    server = make_server(**github_double.settings(), allowed_users="octocat", allowed_orgs="uploaders")

    assert bearer(server, github_double.issue_token("octocat")).get("/api/files").status_code == 200
    assert github_double.count("GET /api/v3/users/octocat/orgs") == 0


def test_refusal_is_cached_like_any_answer(make_server, github_double):
    github_double.add_user("mallory")
    server = make_server(**github_double.settings(), allowed_users="octocat")
    client = bearer(server, github_double.issue_token("mallory"))

    assert [client.get("/api/files").status_code for _ in range(3)] == [403] * 3
    assert github_double.count("GET /api/v3/user") == 1


def test_changed_access_rules_end_sessions_started_under_the_old_ones(make_server, github_double):
    github_double.add_user("octocat")
    before = make_server(**github_double.settings(), allowed_users="octocat,hubot")
    client = browser(before)
    assert sign_in(client).status_code == 302
    # the same secret key and the same cookie, after the operator restarts with other rules (or the same ones)
    narrowed = make_server(**github_double.settings(), allowed_users="hubot")
    unchanged = make_server(**github_double.settings(), allowed_users="hubot, OCTOCAT")

    assert client.get(f"{before.url}/api/files").status_code == 200
    assert client.get(f"{narrowed.url}/api/files").status_code == 401
    assert client.get(f"{unchanged.url}/api/files").status_code == 200
