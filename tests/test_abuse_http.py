"""Issue 18, findings 5 to 8 and the persist 415: HTTP-level abuse, each attack run against a real server.

5. the per-address rate limit covers every route that checks credentials, not only ``/api/``;
6. no value a client sends can write a line of its own into the log;
7. ``/api/persist`` persists all of its tokens or none, and client metadata cannot replace a plugin's keys;
8. deeply nested JSON is a 400 problem on every route that parses JSON, never a 500 with a stack trace.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from .github_helpers import browser

FORGED = "2026-01-01 00:00:00,000 ERROR upload_service [forged]: the admin password is hunter2"
TEXT_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def _temporary(client, name: str = "draft.txt", data: bytes = b"draft") -> dict[str, Any]:
    response = client.put("/api/upload_temporary",
                          json=[{"filename": name, "content": base64.b64encode(data).decode()}])
    assert response.status_code == 201, response.text
    return response.json()["files"][0]


def _ids(client, *, temporary: bool = False) -> set[str]:
    return {file["id"] for file in client.get("/api/files", params={"temporary": int(temporary)}).json()["files"]}


def _assert_problem(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


# -- 5. the per-address rate limit counts every route that checks credentials ------------------------------

@pytest.mark.usefixtures("clear_of_a_minute_edge")
@pytest.mark.parametrize("path", ["/", "/ui/files"])
def test_guessing_tokens_on_ui_routes_is_rate_limited(make_server, path):
    """Attack: guess bearer tokens on the UI's routes, which the address limit did not count (10 bad tokens at
    RATE_LIMIT_PER_ADDRESS=5/minute: ten 401s). Instead: from the sixth on, 429 with Retry-After; static assets
    and /healthz, which check no credentials, stay open."""
    server = make_server(rate_limit_per_address="5/minute")
    guesser = server.client(None)
    answers = [guesser.get(path, headers={"Authorization": f"Bearer guess-{n:08d}"}) for n in range(10)]
    assert [answer.status_code for answer in answers[5:]] == [429] * 5, [answer.status_code for answer in answers]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert guesser.get("/healthz").status_code == 200
    assert guesser.get("/static/js/app.js").status_code == 200


@pytest.mark.usefixtures("clear_of_a_minute_edge")
def test_the_github_sign_in_callback_is_rate_limited(make_server, github_double):
    """Attack: hammer GitHub's sign-in callback (each good one costs the server calls to GitHub) from one
    address. Instead: it counts towards RATE_LIMIT_PER_ADDRESS like every route that checks credentials."""
    server = make_server(rate_limit_per_address="3/minute", **github_double.settings())
    client = browser(server)
    answers = [client.get("/login/authorized", params={"state": f"forged-{n}", "code": "x"}).status_code
               for n in range(5)]
    assert answers == [400, 400, 400, 429, 429]
