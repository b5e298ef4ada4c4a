"""GitHub bearer tokens on the API, end to end: validation, the short cache, revocation, GitHub down.

Tests that need no special settings share one server and one double (each with its own GitHub users).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from .github_fixtures import github, server, shared  # noqa: F401 (fixtures)
from .github_helpers import browser, sign_in
from .servers import TOKENS, free_port, tls

USER_ROUTE = "GET /api/v3/user"




def api(server, token: str) -> httpx.Client:
    client = server.client(None)
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def test_github_token_uploads_and_lists_own_files(server, github):
    github.add_user("tok-octo")
    github.add_user("tok-hubot")
    octocat = api(server, github.issue_token("tok-octo"))
    hubot = api(server, github.issue_token("tok-hubot", prefix="github_pat_"))

    created = octocat.post("/api/upload", json=[{"filename": "mine.txt", "content": "aGk="}])  # no CSRF needed

    assert created.status_code == 201, created.text
    assert [f["filename"] for f in octocat.get("/api/files").json()["files"]] == ["mine.txt"]
    assert hubot.get("/api/files").json()["files"] == []
    assert hubot.get(created.json()["files"][0]["url"]).status_code == 404
    legacy = api(server, github.issue_token("tok-octo", prefix=""))  # 40 hex digits, from before 2021
    assert [f["filename"] for f in legacy.get("/api/files").json()["files"]] == ["mine.txt"]


def test_token_owner_is_the_same_as_the_browser_user(server, github):
    github.add_user("same-owner")
    api(server, github.issue_token("same-owner")).put("/api/files/from-token.txt", content=b"hello")
    api(server, github.issue_token("same-owner", prefix="gho_")).put("/api/files/from-oauth-token.txt", content=b"x")

    client = browser(server)
    sign_in(client)
    listed = client.get("/api/files").json()["files"]

    assert sorted(f["filename"] for f in listed) == ["from-oauth-token.txt", "from-token.txt"]


def test_a_burst_of_calls_costs_one_github_call(server, github):
    github.add_user("burster")
    token = github.issue_token("burster")
    before = github.count(USER_ROUTE)

    def list_files(_: int) -> int:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, verify=tls()) as client:
            return client.get("/api/files").status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(list_files, range(24)))
    statuses += [list_files(0) for _ in range(5)]

    assert statuses == [200] * 29
    assert github.count(USER_ROUTE) == before + 1


def test_revoked_token_stops_working_within_the_cache_time(make_server, github_double):
    github_double.add_user("octocat")
    server = make_server(**github_double.settings(), github_token_cache_ttl="1s")
    token = github_double.issue_token("octocat")
    client = api(server, token)
    assert client.get("/api/files").status_code == 200

    github_double.revoke(token)
    still_cached = client.get("/api/files").status_code
    deadline = time.monotonic() + 10
    while (after_ttl := client.get("/api/files")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)  # answered from the cache until its 1 s are up

    assert still_cached == 200
    assert after_ttl.status_code == 401
    assert after_ttl.headers["Content-Type"] == "application/problem+json"
    assert "Bearer" in after_ttl.headers["WWW-Authenticate"]
    assert github_double.count(USER_ROUTE) == 2


def test_bad_credentials_give_401_and_are_remembered(server, github):
    before = github.count(USER_ROUTE)
    client = api(server, "ghp_" + "0" * 36)  # GitHub's format, but GitHub does not know it

    answers = [client.get("/api/files") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [401] * 3
    assert answers[0].json()["status"] == 401
    assert github.count(USER_ROUTE) == before + 1


def test_static_and_unknown_non_github_tokens_cost_no_github_call(server, github):
    before = github.total_calls()

    static = server.client("alice").get("/api/files")
    unknown = api(server, "not-a-github-token-at-all").get("/api/files")

    assert static.status_code == 200
    assert unknown.status_code == 401
    assert github.total_calls() == before


def test_static_token_in_github_format_is_matched_before_github(make_server, github_double):
    github_double.add_user("octocat")
    lookalike = "ghp_" + "a1" * 18
    server = make_server(**github_double.settings(), api_tokens=f"ci:{lookalike},alice:{TOKENS['alice']}")

    response = api(server, lookalike).put("/api/files/ci.txt", content=b"x")

    assert response.status_code == 201
    assert github_double.total_calls() == 0


def test_github_down_gives_503_and_lets_nobody_in(server, github):
    github.add_user("downer")
    token = github.issue_token("downer")
    client = api(server, token)
    github.down = True

    down = client.put("/api/files/nope.txt", content=b"x")
    github.down = False
    back = client.get("/api/files")

    assert down.status_code == 503
    assert down.headers["Content-Type"] == "application/problem+json"
    assert "GitHub" in down.json()["detail"] and token not in down.text
    assert back.status_code == 200 and back.json()["files"] == []  # the failure was not cached, nothing stored


def test_github_unreachable_gives_503(make_server, github_double):
    github_double.add_user("octocat")
    nowhere = f"http://127.0.0.1:{free_port()}"
    server = make_server(**{**github_double.settings(), "github_api_url": nowhere})

    response = api(server, github_double.issue_token("octocat")).get("/api/files")

    assert response.status_code == 503 and response.json()["title"] == "Service Unavailable"

