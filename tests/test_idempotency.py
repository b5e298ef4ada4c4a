"""``Idempotency-Key``: a repeat by the same owner gets the first answer and nothing is done twice (409 while the
first runs, 422 for another request under the key), on every route that creates or changes something.

In-process servers here; across instances and with an instance killed before it answers:
``test_idempotency_instances.py``.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from upload_service import KeyedAttempt
from upload_service.builtin.sharing.records import FileRequest
from upload_service.builtin.sharing.slots import MAX_CLAIMS, claimed, keep_claim

from .faults import connect, read_answer_head, received, request_head, wait_for
from .servers import Server
from .tus import TUS

pytestmark = pytest.mark.fast


def key() -> dict[str, str]:
    return {"Idempotency-Key": f'"{uuid.uuid4()}"'}


def owner_files(server: Server, client: httpx.Client, temporary: bool = False) -> set[str]:
    listed = client.get("/api/files", params={"limit": 1000, "temporary": "1" if temporary else "0"})
    return {file["id"] for file in listed.json()["files"]}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_a_raw_put_repeated_after_it_finished_is_answered_again_and_stored_once(server: Server) -> None:
    client = server.client()
    before = owner_files(server, client)
    headers = key()
    first = client.put("/api/files/once.txt", content=b"stored once", headers=headers)
    again = client.put("/api/files/once.txt", content=b"stored once", headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert owner_files(server, client) - before == {first.json()["id"]}


def test_the_bare_token_form_of_the_key_works_as_the_quoted_one(server: Server) -> None:
    client = server.client()
    token = uuid.uuid4().hex
    first = client.put("/api/files/bare.txt", content=b"x", headers={"Idempotency-Key": token})
    quoted = client.put("/api/files/bare.txt", content=b"x", headers={"Idempotency-Key": f'"{token}"'})
    assert quoted.headers.get("Idempotent-Replayed") == "true" and quoted.json()["id"] == first.json()["id"]


@pytest.mark.parametrize("value", ['"', '""', "two words", '"' + "k" * 256 + '"', "k" * 256, '"caf\u00e9"'])
def test_a_malformed_key_is_a_400_and_stores_nothing(server: Server, value: str) -> None:
    client = server.client()
    before = owner_files(server, client)
    answer = client.put("/api/files/bad.txt", content=b"x",
                        headers={"Idempotency-Key": value.encode()})
    assert answer.status_code == 400 and "Idempotency-Key must be" in answer.json()["detail"]
    assert owner_files(server, client) == before


def test_a_key_of_255_characters_is_taken(server: Server) -> None:
    answer = server.client().put("/api/files/long.txt", content=b"x", headers={"Idempotency-Key": "k" * 255})
    assert answer.status_code == 201


def test_a_json_batch_repeated_stores_its_files_once(server: Server) -> None:
    client = server.client()
    before = owner_files(server, client)
    body = [{"filename": f"{n}.txt", "content": b64(f"file {n}".encode())} for n in range(3)]
    headers = key()
    first = client.put("/api/upload", json=body, headers=headers)
    again = client.put("/api/upload", json=body, headers=headers)
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert owner_files(server, client) - before == {file["id"] for file in first.json()["files"]}


def test_a_multipart_upload_repeated_with_a_new_boundary_is_the_same_request(server: Server) -> None:
    client = server.client()
    before = owner_files(server, client)
    headers = key()
    files = {"file": ("form.bin", b"multipart body " * 1000, "application/octet-stream")}
    first = client.post("/api/upload", files=files, headers=headers)
    again = client.post("/api/upload", files=files, headers=headers)  # httpx draws a new boundary each time
    assert first.request.headers["Content-Type"] != again.request.headers["Content-Type"]
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert owner_files(server, client) - before == {first.json()["files"][0]["id"]}
    other = client.post("/api/upload", files={"file": ("form.bin", b"another body", "text/plain")}, headers=headers)
    assert other.status_code == 422


def test_a_persist_repeated_answers_201_again_instead_of_409(server: Server) -> None:
    client = server.client()
    temporary = client.put("/api/upload_temporary", json=[{"filename": "t.txt", "content": b64(b"temporary")}])
    token = temporary.json()["files"][0]["token"]
    headers = key()
    first = client.post("/api/persist", json={"tokens": [token], "metadata": {"n": 1}}, headers=headers)
    again = client.post("/api/persist", json={"tokens": [token], "metadata": {"n": 1}}, headers=headers)
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert client.post("/api/persist", json={"tokens": [token]}).status_code == 409  # without the key: done already


def test_a_tus_creation_repeated_gives_the_same_upload(server: Server) -> None:
    client = server.client()
    headers = {**TUS, **key(), "Upload-Length": "5", "Upload-Metadata": f"filename {b64(b'tus.txt')}"}
    first = client.post("/api/tus/", headers=headers)
    again = client.post("/api/tus/", headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Location"] == first.headers["Location"] and again.headers["Tus-Resumable"] == "1.0.0"
    other = client.post("/api/tus/", headers={**headers, "Upload-Length": "6"})
    assert other.status_code == 422 and "used for another request" in other.json()["detail"]


def test_a_delete_repeated_answers_204_like_the_first(server: Server) -> None:
    client = server.client()
    file_id = client.put("/api/files/gone.txt", content=b"bye").json()["id"]
    headers = key()
    first = client.delete(f"/api/files/{file_id}", headers=headers)
    again = client.delete(f"/api/files/{file_id}", headers=headers)
    assert first.status_code == again.status_code == 204 and again.headers["Idempotent-Replayed"] == "true"
    assert client.delete(f"/api/files/{file_id}").status_code == 404  # a new request (no key) finds nothing


def test_the_same_key_for_another_request_is_a_422(server: Server) -> None:
    client = server.client()
    before = owner_files(server, client)
    headers = key()
    first = client.put("/api/files/a.txt", content=b"first body", headers=headers)
    for method, path, body in (("PUT", "/api/files/a.txt", b"other body"), ("PUT", "/api/files/b.txt", b"first body"),
                               ("PUT", "/api/files/a.txt?temporary=1", b"first body"),
                               ("PUT", "/api/files/a.txt", b"first body, longer")):
        answer = client.request(method, path, content=body, headers=headers)
        assert answer.status_code == 422 and "used for another request" in answer.json()["detail"], (path, body)
    assert owner_files(server, client) - before == {first.json()["id"]}


def test_another_owner_with_the_same_key_gets_an_answer_of_its_own(server: Server) -> None:
    headers = key()
    alice = server.client("alice").put("/api/files/mine.txt", content=b"same", headers=headers)
    bob = server.client("bob").put("/api/files/mine.txt", content=b"same", headers=headers)
    assert alice.status_code == bob.status_code == 201 and "Idempotent-Replayed" not in bob.headers
    assert alice.json()["id"] != bob.json()["id"]


def test_a_decided_error_is_replayed_and_a_retry_later_error_is_not(make_server) -> None:
    server = make_server(max_upload_size="10")
    client = server.client()
    headers = key()
    first = client.put("/api/files/big.txt", content=b"x" * 11, headers=headers)
    again = client.put("/api/files/big.txt", content=b"x" * 11, headers=headers)
    assert first.status_code == again.status_code == 413 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def _held_open(server: Server, path: str, headers: dict[str, str], length: int, sent: bytes) -> socket.socket:
    sock = connect(server)
    sock.sendall(request_head(server, path, length, headers=headers) + sent)
    return sock


def test_a_repeat_while_the_first_is_in_progress_is_a_409_at_once(server: Server) -> None:
    client = server.client()
    before = owner_files(server, client)
    headers = key()
    body = b"slow body " * 10_000
    sock = _held_open(server, "/api/files/slow.txt", headers, len(body), body[:1000])
    try:
        assert wait_for(lambda: received(sock))
        repeat = client.put("/api/files/slow.txt", content=body, headers=headers)
        assert repeat.status_code == 409 and "still in progress" in repeat.json()["detail"]
        sock.sendall(body[1000:])
        assert read_answer_head(sock).startswith(b"HTTP/1.1 201")
    finally:
        sock.close()
    done = client.put("/api/files/slow.txt", content=body, headers=headers)
    assert done.status_code == 201 and done.headers["Idempotent-Replayed"] == "true"
    assert owner_files(server, client) - before == {done.json()["id"]}


def test_a_request_cut_midway_keeps_no_answer_and_its_retry_does_the_work(server: Server) -> None:
    client = server.client()
    headers = key()
    body = b"cut body " * 10_000
    sock = _held_open(server, "/api/files/cut.txt", headers, len(body), body[:1000])
    assert wait_for(lambda: received(sock))
    sock.close()
    assert wait_for(lambda: client.put("/api/files/cut.txt", content=body, headers=headers).status_code != 409)
    answer = client.put("/api/files/cut.txt", content=body, headers=headers)
    assert answer.status_code == 201


def test_share_links_and_file_requests_take_the_key(server: Server) -> None:
    client = server.client()
    file_id = client.put("/api/files/shared.txt", content=b"shared").json()["id"]
    headers = key()
    first = client.post("/api/shares", json={"files": [file_id]}, headers=headers)
    again = client.post("/api/shares", json={"files": [file_id]}, headers=headers)
    assert first.status_code == again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert len([s for s in client.get("/api/shares").json()["shares"] if s["id"] == first.json()["id"]]) == 1
    revoke = key()
    assert client.delete(f"/api/shares/{first.json()['id']}", headers=revoke).status_code == 204
    assert client.delete(f"/api/shares/{first.json()['id']}", headers=revoke).status_code == 204
    headers = key()
    made = client.post("/api/requests", json={"title": "send me"}, headers=headers)
    made_again = client.post("/api/requests", json={"title": "send me"}, headers=headers)
    assert made.status_code == made_again.status_code == 201 and made_again.json()["id"] == made.json()["id"]


def _file_request(owner: httpx.Client, **options: object) -> dict:
    made = owner.post("/api/requests", json={"title": "send me", **options})
    assert made.status_code == 201, made.text
    return made.json()


def test_a_visitors_upload_through_a_file_request_link_is_done_once_per_link_and_key(server: Server) -> None:
    """A visitor has no account: the link is the scope of their key. A repeat after the upload filled the link
    still gets the first answer; another link, or the owner's own upload, under the same key is a request apart."""
    alice = server.client("alice")
    first_link, other_link = _file_request(alice, max_files=1), _file_request(alice)
    visitor = server.client(None)
    before = owner_files(server, alice)
    headers = key()
    put = f"{first_link['url']}/files/sent.txt"
    first = visitor.put(put, content=b"sent once", headers=headers)
    again = visitor.put(put, content=b"sent once", headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert visitor.put(put, content=b"another body", headers=headers).status_code == 422
    elsewhere = visitor.put(f"{other_link['url']}/files/sent.txt", content=b"sent once", headers=headers)
    own = alice.put("/api/files/sent.txt", content=b"sent once", headers=headers)
    assert elsewhere.status_code == own.status_code == 201
    assert "Idempotent-Replayed" not in elsewhere.headers and "Idempotent-Replayed" not in own.headers
    arrived = [file for file in alice.get("/api/files", params={"limit": 1000}).json()["files"]
               if file["id"] in owner_files(server, alice) - before]
    assert sorted(file["metadata"].get("request", "own") for file in arrived) == sorted(
        [first_link["id"], other_link["id"], "own"])
    assert alice.get(f"/api/requests/{first_link['id']}").json()["files_received"] == 1


def test_a_visitors_form_upload_and_tus_creation_take_the_links_key_and_a_password_takes_none(
        server: Server) -> None:
    alice = server.client("alice")
    link = _file_request(alice, password="open sesame")
    visitor = server.client(None)
    headers = {**key(), "Accept": "application/json"}
    assert visitor.put(f"{link['url']}/files/locked.txt", content=b"x", headers=headers).status_code == 401
    unlock = visitor.post(link["url"], json={"password": "open sesame"}, headers=headers)
    assert unlock.status_code == 204 and visitor.cookies and "Idempotent-Replayed" not in unlock.headers
    before = owner_files(server, alice)  # neither the refusal nor the password spent the key: the form's is new
    form = {"headers": headers, "files": [("file", ("a.txt", b"aaa")), ("file", ("b.txt", b"bbb"))]}
    first, again = visitor.post(link["url"], **form), visitor.post(link["url"], **form)
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert len(owner_files(server, alice) - before) == 2
    tus = {**TUS, **key(), "Upload-Length": "5", "Upload-Metadata": f"filename {b64(b'tus.txt')}"}
    made, made_again = (visitor.post(f"{link['url']}/tus/", headers=tus) for _ in range(2))
    assert made.status_code == made_again.status_code == 201 and made_again.headers["Idempotent-Replayed"] == "true"
    assert made_again.headers["Location"] == made.headers["Location"]
    assert visitor.post(f"{link['url']}/tus/", headers={**tus, "Upload-Length": "6"}).status_code == 422


def test_a_link_keeps_the_newest_claims_of_keyed_uploads_and_none_expired() -> None:
    """The slots of keyed uploads a file request notes for their retries stay few (``MAX_CLAIMS``, about 2 KiB of
    its record), the newest kept; an expired claim holds nothing."""
    link = FileRequest(id="r" * 20, owner_id="alice", owner_name="", owner_provider="", token="t" * 32,
                       created_at=datetime.now(UTC))
    now = time.time()
    for number in range(MAX_CLAIMS + 10):
        keep_claim(link, uuid.uuid4().hex, 1, int(now) + 100 + number, now)
    assert len(link.claims) == MAX_CLAIMS and min(claim[1] for claim in link.claims.values()) == int(now) + 110
    assert len(json.dumps(link.claims, separators=(",", ":"))) < 2048  # as the storages write it
    link.claims["old"] = [1, int(now) - 1]
    assert claimed(link, KeyedAttempt("old", retrying=True)) == 0
    keep_claim(link, "new", 2, int(now) + 1000, now)
    assert "old" not in link.claims and claimed(link, KeyedAttempt("new", retrying=True)) == 2


def test_an_answer_that_depends_on_accept_is_replayed_only_to_the_same_accept(server: Server) -> None:
    """A visitor's form upload is answered with an HTML page or JSON by Accept (``Vary: Accept``): a repeat that
    asks for the other is a 422 (the kept answer is not one it could get), and nothing is stored twice. An upload
    to the API, answered with JSON whatever Accept says, is replayed to any Accept."""
    alice = server.client("alice")
    link = _file_request(alice)
    visitor = server.client(None)
    before = owner_files(server, alice)
    headers = {**key(), "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    form = {"files": [("file", ("page.txt", b"a page"))]}
    first = visitor.post(link["url"], headers=headers, **form)
    again = visitor.post(link["url"], headers={**headers, "Accept": "text/html, application/xhtml+xml, */*;q=0.8"},
                         **form)
    assert first.status_code == again.status_code == 201 and first.headers["Content-Type"].startswith("text/html")
    assert again.text == first.text and again.headers["Idempotent-Replayed"] == "true"
    other = visitor.post(link["url"], headers={**headers, "Accept": "application/json"}, **form)
    assert other.status_code == 422 and "depends on accept" in other.json()["detail"]
    assert len(owner_files(server, alice) - before) == 1
    api = key()
    made = alice.put("/api/files/any.txt", content=b"x", headers={**api, "Accept": "application/json"})
    replayed = alice.put("/api/files/any.txt", content=b"x", headers={**api, "Accept": "text/html"})
    assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.json() == made.json()


def test_the_openapi_document_names_the_header_and_its_answers(server: Server) -> None:
    paths = server.client(None).get("/api/openapi.json").json()["paths"]
    keyed = [("/api/files/{filename_or_file_id}", "put"), ("/api/files/{filename_or_file_id}", "delete"),
             ("/api/upload", "put"), ("/api/upload", "post"), ("/api/upload_temporary", "post"),
             ("/api/persist", "post"), ("/api/tus/", "post"), ("/api/shares", "post"), ("/api/requests", "post"),
             ("/r/{token}", "post"), ("/r/{token}/files/{filename}", "put"), ("/r/{token}/tus/", "post")]
    for path, method in keyed:
        operation = paths[path][method]
        assert "Idempotency-Key" in [p["name"] for p in operation["parameters"] if p["in"] == "header"], path
        assert {"409", "422"} <= set(operation["responses"]), path
    get = paths["/api/files"]["get"]
    assert "Idempotency-Key" not in [p["name"] for p in get["parameters"]]


def keyed_upload_with_a_short_ttl(factory, name: str):
    """A service keeping answers for 1 s, its client, a key, and the first keyed upload of ``name`` under it."""
    running = factory(idempotency_ttl="1s")
    client = running.client()
    headers = key()
    return running, client, headers, client.put(f"/api/files/{name}", content=name.encode(), headers=headers)


def test_an_answer_expires_after_the_ttl_and_the_sweep_removes_it(upload_service_factory) -> None:
    running, client, headers, first = keyed_upload_with_a_short_ttl(upload_service_factory, "ttl.txt")
    kept = running.run(running.service.storage.list("idempotency/"))
    assert [stored.key.endswith("-answer") for stored in kept] == [False, True]  # the mark, and the answer
    def swept() -> bool:
        running.run(running.service.sweep())
        return running.run(running.service.storage.list("idempotency/")) == []

    assert wait_for(swept, timeout=5)
    later = client.put("/api/files/ttl.txt", content=b"ttl.txt", headers=headers)
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in later.headers


def test_a_browser_form_with_a_key_takes_its_csrf_token_from_the_form_and_a_forged_write_stays_refused(
        make_server) -> None:
    """A proxy may give every request a key (nginx's $request_id): a plain form, whose CSRF token is a field, still
    works, and a cookie-authenticated write without the token is still refused, key or not."""
    server = make_server(dev="1", dev_token="dev-token-for-tests")
    browser = httpx.Client(base_url=server.url, follow_redirects=False)
    csrf = browser.get("/").text.split('name="csrf_token" value="')[1].split('"')[0]
    browser.post("/login/dev", data={"csrf_token": csrf})
    csrf = browser.get("/").text.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"data": {"csrf_token": csrf, "redirect": "1"},
            "files": {"file": ("form.txt", b"a plain form", "text/plain")}}
    headers = key()
    assert browser.post("/api/upload", headers=headers, **form).status_code == 303
    again = browser.post("/api/upload", headers=headers, **form)
    assert again.status_code == 303 and again.headers["Idempotent-Replayed"] == "true"
    forged = browser.put("/api/files/forged.txt", content=b"x", headers=key())
    assert forged.status_code == 403
    browser.close()


def test_an_expired_key_not_yet_swept_is_a_new_key(upload_service_factory) -> None:
    running, client, headers, first = keyed_upload_with_a_short_ttl(upload_service_factory, "old.txt")
    records = running.run(running.service.storage.list("idempotency/"))
    expires = max(stored.metadata["expires_at"] for stored in records)
    assert wait_for(lambda: time.time() > expires, timeout=5)
    later = client.put("/api/files/old.txt", content=b"old.txt", headers=headers)  # over the stale records
    again = client.put("/api/files/old.txt", content=b"old.txt", headers=headers)
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == later.json()
