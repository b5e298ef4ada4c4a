"""Issue 18, findings 5 to 8 and the persist 415: HTTP-level abuse, each attack run against a real server.

5. the per-address rate limit covers every route that checks credentials, not only ``/api/``;
6. no value a client sends can write a line of its own into the log;
7. ``/api/persist`` persists all of its tokens or none, and client metadata cannot replace a plugin's keys;
8. deeply nested JSON is a 400 problem on every route that parses JSON, never a 500 with a stack trace.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from typing import Any

import pytest

from upload_service import StorageError, hookimpl
from upload_service.testing import MemoryStorage

from .github_helpers import browser, query, start_sign_in

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


# -- 6. forged log lines ----------------------------------------------------------------------------------

def _records(log: str) -> list[str]:
    """The text log's lines that start a record (a timestamp and a level at the start of the line)."""
    return [line for line in log.splitlines() if TEXT_RECORD.match(line)]


@pytest.mark.process  # reads the server's own log
def test_a_newline_in_the_path_cannot_forge_a_log_line(make_server):
    """Attack: ``GET /api/files/x%0A<a whole log line>`` (no credentials needed) wrote that line into the text
    log as a record of its own. Instead: the control characters are escaped, and the path stays on the access
    record's line."""
    server = make_server(log_level="INFO")
    response = server.client(None).get("/api/files/x%0D%0A" + FORGED.replace(" ", "%20"))
    assert response.status_code == 401
    records = _records(server.log())
    assert not [line for line in records if line.startswith(FORGED[:23])], server.log()
    access = [line for line in records if "hunter2" in line]
    assert len(access) == 1 and "/api/files/x\\r\\n2026-01-01" in access[0], server.log()


@pytest.mark.process
def test_json_logs_carry_no_control_characters(make_server):
    """Attack: the same path with LOG_FORMAT=json. Instead: every line stays one valid JSON object, and no
    value in it holds a raw control character that a log viewer would print as a line break."""
    server = make_server(log_level="INFO", log_format="json")
    server.client(None).get("/api/files/x%0A%1B[31m" + FORGED.replace(" ", "%20"))
    entries = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    access = [entry for entry in entries if "hunter2" in str(entry.get("message"))]
    assert len(access) == 1, entries
    for value in access[0].values():
        assert not re.search(r"[\x00-\x1f\x7f]", str(value)), access[0]


@pytest.mark.process
def test_github_error_description_cannot_forge_a_log_line(make_server, github_double):
    """Attack: come back to the sign-in callback with ``error_description=%0A<a whole log line>`` (GitHub's
    text, but any visitor can write the URL). Instead: it is logged escaped, on the failure's own line."""
    server = make_server(log_level="INFO", **github_double.settings())
    client = browser(server)
    state = query(start_sign_in(client))["state"]
    callback = client.get("/login/authorized", params={
        "state": state, "error": "server_error", "error_description": "oops\n" + FORGED})
    assert callback.status_code == 400
    records = _records(server.log())
    assert not [line for line in records if line.startswith(FORGED[:23])], server.log()
    assert any("GitHub sign-in failed" in line and "oops\\n2026-01-01" in line for line in records), server.log()


# -- 7. /api/persist: all or nothing, and the plugins' metadata kept -------------------------------------

class PersistRecorder:
    """A plugin that labels every upload (as a scanner or the images plugin does) and records notifications."""

    name = "persist_recorder"

    def __init__(self) -> None:
        self.persisted: list[str] = []

    @hookimpl
    def process_upload(self, file, service) -> dict[str, Any]:
        return {"scan": "clean"}

    @hookimpl
    def upload_persisted(self, file, service) -> None:
        self.persisted.append(file.id)


def test_a_repeated_token_persists_nothing(upload_service_factory):
    """Attack: ``{"tokens": [T1, T2, T2]}`` answered 409 yet persisted T1 and T2 (and told plugins so).
    Instead: a token named twice is a 400 problem, nothing is persisted, and no plugin hears of it."""
    recorder = PersistRecorder()
    running = upload_service_factory(plugins=[recorder])
    client = running.client()
    first, second = _temporary(client, "one.txt"), _temporary(client, "two.txt")
    refused = client.post("/api/persist", json={"tokens": [first["token"], second["token"], second["token"]]})
    assert "more than once" in _assert_problem(refused, 400)["detail"]
    assert _ids(client) & {first["id"], second["id"]} == set()
    assert {first["id"], second["id"]} <= _ids(client, temporary=True)
    running.run(running.service.notified())
    assert recorder.persisted == []
    assert client.post("/api/persist", json={"tokens": [first["token"], second["token"]]}).status_code == 201
    running.run(running.service.notified())
    assert sorted(recorder.persisted) == sorted([first["id"], second["id"]])


def test_persist_takes_at_most_max_files_per_request_tokens(make_server):
    """Attack: one persist naming thousands of uploads (a 1 MiB body holds ~7,000 tokens), each a stat and a
    move. Instead: more tokens than MAX_FILES_PER_REQUEST is a 413 problem, and nothing is persisted."""
    server = make_server(max_files_per_request="2")
    client = server.client()
    files = [_temporary(client, f"{n}.txt") for n in range(3)]
    problem = _assert_problem(client.post("/api/persist", json={"tokens": [file["token"] for file in files]}), 413)
    assert problem["max_files"] == 2
    assert _ids(client) & {file["id"] for file in files} == set()


class FailingMoves(MemoryStorage):
    """Memory storage whose ``fail_at``-th move from now on fails, as a lost connection to a store does."""

    name = "failing_moves"
    fail_at: int | None = None

    async def move(self, src: str, dst: str, metadata: dict[str, Any] | None = None) -> Any:
        if self.fail_at is not None:
            self.fail_at -= 1
            if self.fail_at == 0:
                self.fail_at = None
                raise StorageError("the store went away mid-persist")
        return await super().move(src, dst, metadata)


class FailingMovesPlugin:
    name = "failing_moves_storage"

    def __init__(self) -> None:
        self.storage = FailingMoves()

    @hookimpl
    def register_storage_backends(self, register, service) -> None:
        register("failing_moves", lambda service: self.storage)


def test_a_persist_that_fails_midway_puts_back_what_it_moved(upload_service_factory):
    """Attack (or bad luck): the third of three moves fails. Before, the first two stayed persistent under a
    500. Instead: they are temporary again, as they were, and can be persisted later."""
    storage = FailingMovesPlugin()
    recorder = PersistRecorder()
    running = upload_service_factory(plugins=[storage, recorder], entry_points=False, storage_backend="failing_moves")
    client = running.client()
    files = [_temporary(client, f"{n}.txt", f"content {n}".encode()) for n in range(3)]
    storage.storage.fail_at = 3
    failed = client.post("/api/persist", json={"tokens": [file["token"] for file in files]})
    _assert_problem(failed, 500)
    assert _ids(client) & {file["id"] for file in files} == set()
    for file in files:
        restored = client.get(f"/api/files/{file['id']}").json()
        assert restored["temporary"] is True and restored["expires_at"] == file["expires_at"]
        assert restored["metadata"] == {"scan": "clean"}
    running.run(running.service.notified())
    assert recorder.persisted == []
    again = client.post("/api/persist", json={"tokens": [file["token"] for file in files]})
    assert again.status_code == 201, again.text
    assert [client.get(file["url"]).content for file in files] == [f"content {n}".encode() for n in range(3)]


def test_persist_metadata_cannot_replace_what_plugins_recorded(upload_service_factory):
    """Attack: persist with ``{"scan": "clean"}`` over a plugin's verdict, or ``{"preview": "<endpoint>"}``,
    which the UI turns into a URL of any route taking a file id. Instead: 400, nothing persisted; keys of the
    client's own are added beside the plugins' ones."""
    running = upload_service_factory(plugins=[PersistRecorder()])
    client = running.client()
    temp = _temporary(client)
    for metadata in ({"scan": "infected, but trust me"}, {"preview": "file_content"}):
        problem = _assert_problem(client.post("/api/persist", json={"tokens": [temp["token"]], "metadata": metadata}),
                                  400)
        assert next(iter(metadata)) in problem["detail"]
        assert temp["id"] not in _ids(client)
    saved = client.post("/api/persist", json={"tokens": [temp["token"]], "metadata": {"description": "Q3"}})
    assert saved.status_code == 201, saved.text
    assert saved.json()["files"][0]["metadata"] == {"scan": "clean", "description": "Q3"}


# -- 8. deeply nested JSON --------------------------------------------------------------------------------

def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", ["/api/upload", "/api/upload_temporary", "/api/persist"])
def test_deeply_nested_json_is_a_400_problem(server, caplog, path):
    """Attack: a JSON body nested 1,500 levels deep (past the parser's recursion limit, within the bound on the
    number of arrays) answered 500 and logged a RecursionError with its stack trace each time. Instead: a 400
    problem, and nothing logged at ERROR. (Deeper still is more arrays than any body may hold: 413, unparsed.)"""
    caplog.set_level(logging.ERROR)
    response = server.client().post(path, content=_nested(1_500), headers={"Content-Type": "application/json"})
    problem = _assert_problem(response, 400)
    assert "nested" in problem["detail"]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_deeply_nested_persist_metadata_is_refused(server):
    """Attack: persist with metadata nested 500 levels deep (under the parser's recursion limit), kept with the
    file for every later reader (listings, webhooks) to choke on. Instead: 400, and the file stays temporary."""
    client = server.client()
    temp = _temporary(client)
    body = b'{"tokens": ["' + temp["token"].encode() + b'"], "metadata": {"deep": ' + _nested(500) + b"}}"
    _assert_problem(client.post("/api/persist", content=body, headers={"Content-Type": "application/json"}), 400)
    assert temp["id"] not in _ids(client)
    assert client.post("/api/persist", json={"tokens": [temp["token"]], "metadata": {"a": [[{"b": 1}]]}}
                       ).status_code == 201


# -- also: /api/persist answers 415 for a body that is not JSON ---------------------------------------------

def test_persist_with_a_body_that_is_not_json_is_415(server):
    """A persist body sent as text/plain answered 400. Instead: 415 as the upload routes answer, documented."""
    client = server.client()
    temp = _temporary(client)
    body = json.dumps({"tokens": [temp["token"]]}).encode()
    problem = _assert_problem(client.post("/api/persist", content=body, headers={"Content-Type": "text/plain"}), 415)
    assert "application/json" in problem["detail"]
    assert temp["id"] not in _ids(client)
    documented = client.get("/api/openapi.json").json()["paths"]["/api/persist"]["post"]["responses"]
    assert "415" in documented


def test_a_json_body_of_a_million_empty_arrays_is_refused_before_parsing(server):
    """Attack: 32 MiB of ``[[],[],...]`` to the JSON upload (a few MB to the other JSON routes) cost seconds of
    event-loop CPU to parse (msgspec: 2 s for 11 million arrays), during which every other user waited. Objects
    and arrays are counted first (memchr speed): too many is 413 and nothing is parsed or stored."""
    client = server.client("alice")
    body = b"[" + b",".join([b"[]"] * 3_000_000) + b"]"
    started = time.perf_counter()
    refused = client.put("/api/upload", content=body, headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and "objects and arrays" in refused.json()["detail"]
    assert time.perf_counter() - started < 5
    persist = client.post("/api/persist", content=b'{"tokens": [' + b",".join([b"{}"] * 20_000) + b"]}",
                          headers={"Content-Type": "application/json"})
    assert persist.status_code == 413 and "objects and arrays" in persist.json()["detail"]
