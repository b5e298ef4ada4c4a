"""tus 1.0.0 as the specification says it answers: one table row per status code and header, real server."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from .conftest import resumable_entries, server_starter, stored_files
from .servers import Server
from .tus import (  # noqa: F401 (tus_backend: autouse fixture)
    OCTETS,
    TUS,
    checksum,
    create,
    metadata,
    no_uploads_left,
    offset_of,
    patch,
    tus_backend,
)

MAX = 1024 * 1024


@pytest.fixture(scope="module")
def tus_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               storage_backend: str) -> Iterator[Server]:
    running = server_starter(request, tmp_path_factory, storage_backend)(max_upload_size=str(MAX))
    yield running
    running.stop()


@dataclass
class Case:
    """``target`` picks the URL: root, new (an empty 10-byte upload of alice), deferred, half (5 of 10 bytes
    received), final (a concatenation), missing (an id nobody has), bobs (10-byte upload of bob)."""

    name: str
    method: str
    target: str
    headers: dict[str, str]
    status: int
    body: bytes = b""
    expect: dict[str, str | Callable[[str], bool]] = field(default_factory=dict)
    user: str | None = "alice"


def _target(server: Server, target: str) -> str:
    alice, bob = server.client("alice"), server.client("bob")
    if target == "root":
        return "/api/tus/"
    if target == "new":
        return create(alice, 10, Upload_Metadata=metadata(filename="a.txt"))
    if target == "deferred":
        return create(alice, None)
    if target == "half":
        url = create(alice, 10)
        assert patch(alice, url, 0, b"01234").status_code == 204
        return url
    if target == "final":
        part = create(alice, 3, Upload_Concat="partial")
        assert patch(alice, part, 0, b"abc").status_code == 204
        response = alice.post("/api/tus/", headers={**TUS, "Upload-Concat": f"final;{part}"})
        assert response.status_code == 201
        return response.headers["Location"]
    if target == "missing":
        return "/api/tus/AAAAAAAAAAAAAAAAAAAAAAAA"
    if target == "bobs":
        return create(bob, 10)
    raise AssertionError(target)


CASES = [
    Case("options is open and lists the server's abilities", "OPTIONS", "root", {}, 204, user=None, expect={
        "Tus-Version": "1.0.0", "Tus-Max-Size": str(MAX), "Tus-Checksum-Algorithm": "sha1,md5,sha256",
        "Tus-Extension": "creation,creation-with-upload,creation-defer-length,termination,concatenation,"
                         "checksum,expiration"}),
    Case("options on an upload URL", "OPTIONS", "new", {}, 204, user=None, expect={"Tus-Version": "1.0.0"}),
    Case("no Tus-Resumable", "POST", "root", {"Upload-Length": "1"}, 412, expect={"Tus-Version": "1.0.0"}),
    Case("wrong Tus-Resumable", "HEAD", "new", {"Tus-Resumable": "0.2.2"}, 412),
    Case("no credentials", "POST", "root", {**TUS, "Upload-Length": "1"}, 401, user=None),
    Case("no length at all", "POST", "root", TUS, 400),
    Case("length and deferred length", "POST", "root", {**TUS, "Upload-Length": "1", "Upload-Defer-Length": "1"}, 400),
    Case("deferred length other than 1", "POST", "root", {**TUS, "Upload-Defer-Length": "2"}, 400),
    Case("negative length", "POST", "root", {**TUS, "Upload-Length": "-1"}, 400),
    Case("length over Tus-Max-Size", "POST", "root", {**TUS, "Upload-Length": str(MAX + 1)}, 413),
    Case("metadata not base64", "POST", "root", {**TUS, "Upload-Length": "1", "Upload-Metadata": "filename ***"}, 400),
    Case("metadata key twice", "POST", "root",
         {**TUS, "Upload-Length": "1", "Upload-Metadata": "a YQ==,a YQ=="}, 400),
    Case("creation", "POST", "root", {**TUS, "Upload-Length": "5"}, 201,
         expect={"Location": lambda v: v.startswith("/api/tus/"), "Upload-Expires": lambda v: v.endswith("GMT")}),
    Case("creation with upload", "POST", "root", {**OCTETS, "Upload-Length": "10"}, 201, body=b"01234",
         expect={"Upload-Offset": "5"}),
    Case("creation with upload longer than the upload", "POST", "root", {**OCTETS, "Upload-Length": "3"}, 413,
         body=b"01234"),
    Case("creation of an empty file completes at once", "POST", "root", {**TUS, "Upload-Length": "0"}, 201,
         expect={"Upload-File-Id": lambda v: len(v) == 20}),
    Case("final of a partial that is not finished", "POST", "root", {**TUS, "Upload-Concat": "final;HALF"}, 400),
    Case("final of an unknown partial", "POST", "root",
         {**TUS, "Upload-Concat": "final;/api/tus/AAAAAAAAAAAAAAAAAAAAAAAA"}, 404),
    Case("malformed Upload-Concat", "POST", "root", {**TUS, "Upload-Concat": "whole"}, 400),
    Case("head", "HEAD", "new", TUS, 200, expect={
        "Upload-Offset": "0", "Upload-Length": "10", "Cache-Control": "no-store",
        "Upload-Metadata": metadata(filename="a.txt"), "Tus-Resumable": "1.0.0"}),
    Case("head of a deferred upload", "HEAD", "deferred", TUS, 200, expect={"Upload-Defer-Length": "1"}),
    Case("head of a final upload", "HEAD", "final", TUS, 200,
         expect={"Upload-Concat": lambda v: v.startswith("final;/api/tus/"), "Upload-Offset": "3"}),
    Case("head of an unknown upload", "HEAD", "missing", TUS, 404),
    Case("head of someone else's upload", "HEAD", "bobs", TUS, 404),
    Case("head of an id that is no id", "HEAD", "root", TUS, 404),
    Case("patch", "PATCH", "new", {**OCTETS, "Upload-Offset": "0"}, 204, body=b"0123",
         expect={"Upload-Offset": "4", "Upload-Expires": lambda v: v.endswith("GMT")}),
    Case("patch that completes", "PATCH", "half", {**OCTETS, "Upload-Offset": "5"}, 204, body=b"56789",
         expect={"Upload-Offset": "10", "Upload-File-Id": lambda v: len(v) == 20}),
    Case("patch without the offset content type", "PATCH", "new",
         {**TUS, "Content-Type": "application/octet-stream", "Upload-Offset": "0"}, 415, body=b"0"),
    Case("patch at the wrong offset", "PATCH", "half", {**OCTETS, "Upload-Offset": "3"}, 409, body=b"0",
         expect={"Upload-Offset": "5"}),
    Case("patch without an offset", "PATCH", "new", OCTETS, 400, body=b"0"),
    Case("patch past the length", "PATCH", "new", {**OCTETS, "Upload-Offset": "0"}, 413, body=b"0123456789A"),
    Case("patch of a final upload", "PATCH", "final", {**OCTETS, "Upload-Offset": "3"}, 403, body=b"0"),
    Case("patch of someone else's upload", "PATCH", "bobs", {**OCTETS, "Upload-Offset": "0"}, 404, body=b"0"),
    Case("patch with a checksum mismatch", "PATCH", "new",
         {**OCTETS, "Upload-Offset": "0", "Upload-Checksum": checksum("sha1", b"other")}, 460, body=b"0123"),
    Case("patch with an unsupported checksum", "PATCH", "new",
         {**OCTETS, "Upload-Offset": "0", "Upload-Checksum": "crc32 AAAAAA=="}, 400, body=b"0123"),
    *[Case(f"patch with a good {algorithm} checksum", "PATCH", "new",
           {**OCTETS, "Upload-Offset": "0", "Upload-Checksum": checksum(algorithm, b"0123")}, 204, body=b"0123",
           expect={"Upload-Offset": "4"}) for algorithm in ("sha1", "md5", "sha256")],
    Case("patch setting a deferred length", "PATCH", "deferred", {**OCTETS, "Upload-Offset": "0",
         "Upload-Length": "3"}, 204, body=b"abc", expect={"Upload-File-Id": lambda v: len(v) == 20}),
    Case("patch changing a known length", "PATCH", "new", {**OCTETS, "Upload-Offset": "0", "Upload-Length": "9"},
         400, body=b"a"),
    Case("patch through X-HTTP-Method-Override", "POST", "new",
         {**OCTETS, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}, 204, body=b"ab",
         expect={"Upload-Offset": "2"}),
    Case("termination", "DELETE", "half", TUS, 204),
    Case("termination of someone else's upload", "DELETE", "bobs", TUS, 404),
    Case("termination of an unknown upload", "DELETE", "missing", TUS, 404),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_status(tus_server: Server, case: Case) -> None:
    url = _target(tus_server, case.target)
    headers = dict(case.headers)
    if headers.get("Upload-Concat") == "final;HALF":
        headers["Upload-Concat"] = f"final;{_target(tus_server, 'half')}"
    if case.name == "head of an id that is no id":
        url = "/api/tus/..objects.lock"
    client = tus_server.client(case.user)
    response = client.request(case.method, url, headers=headers, content=case.body)
    assert response.status_code == case.status, response.text
    if case.method != "OPTIONS":
        assert response.headers["Tus-Resumable"] == "1.0.0"
    for name, expected in case.expect.items():
        value = response.headers.get(name)
        assert value is not None, f"{name} missing"
        assert expected(value) if callable(expected) else value == expected, f"{name}: {value}"


def test_checksum_mismatch_discards_the_chunk(tus_server: Server) -> None:
    client = tus_server.client()
    url = create(client, 10)
    assert patch(client, url, 0, b"01234").status_code == 204
    bad = patch(client, url, 5, b"56789", Upload_Checksum=checksum("md5", b"xxxxx"))
    assert bad.status_code == 460
    assert offset_of(client, url) == 5
    good = patch(client, url, 5, b"56789", Upload_Checksum=checksum("md5", b"56789"))
    assert good.status_code == 204
    file = client.get(f"/api/files/{good.headers['Upload-File-Id']}").json()
    assert file["sha256"] == hashlib.sha256(b"0123456789").hexdigest()


def test_terminated_upload_is_gone(tus_server: Server) -> None:
    client = tus_server.client()
    url = create(client, 10)
    assert patch(client, url, 0, b"01234").status_code == 204
    assert client.delete(url, headers=TUS).status_code == 204
    assert client.head(url, headers=TUS).status_code == 404
    assert patch(client, url, 5, b"56789").status_code == 404


def test_completed_upload_is_a_file_with_metadata_and_head_names_it(tus_server: Server) -> None:
    client = tus_server.client()
    data = b"hello tus"
    url = create(client, len(data), Upload_Metadata=metadata(filename="../../greeting.txt", filetype="text/plain"))
    done = patch(client, url, 0, data)
    file_id = done.headers["Upload-File-Id"]
    assert "Upload-Expires" not in done.headers
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-File-Id"] == file_id and head.headers["Upload-Offset"] == str(len(data))
    file = client.get(f"/api/files/{file_id}").json()
    assert (file["filename"], file["content_type"], file["size"]) == ("greeting.txt", "text/plain", len(data))
    assert file["sha256"] == hashlib.sha256(data).hexdigest() and file["temporary"] is False
    assert client.get(file["url"]).content == data
    assert patch(client, url, len(data), b"").status_code == 204  # a repeated final PATCH is harmless


def test_temporary_upload_gives_a_token_that_persists(tus_server: Server) -> None:
    client = tus_server.client()
    url = create(client, 4, Upload_Metadata=metadata(filename="t.bin", temporary="true"))
    done = patch(client, url, 0, b"temp")
    token = done.headers["Upload-Token"]
    assert client.head(url, headers=TUS).headers["Upload-Token"]
    assert client.get(f"/api/files/{done.headers['Upload-File-Id']}").json()["temporary"] is True
    persisted = client.post("/api/persist", json={"tokens": [token], "metadata": {"note": "x"}})
    assert persisted.status_code == 201, persisted.text
    assert persisted.json()["files"][0]["id"] == done.headers["Upload-File-Id"]


def test_concatenation_joins_partials_in_order(tus_server: Server) -> None:
    client = tus_server.client()
    pieces = [b"first-", b"second-", b"third"]
    parts = []
    for piece in pieces:
        part = create(client, len(piece), Upload_Concat="partial")
        assert patch(client, part, 0, piece).status_code == 204
        assert client.head(part, headers=TUS).headers["Upload-Concat"] == "partial"
        assert "Upload-File-Id" not in client.head(part, headers=TUS).headers
        parts.append(part)
    final = client.post("/api/tus/", headers={**TUS, "Upload-Concat": "final;" + " ".join(reversed(parts)),
                                               "Upload-Metadata": metadata(filename="joined.txt")})
    assert final.status_code == 201
    file = client.get(f"/api/files/{final.headers['Upload-File-Id']}").json()
    joined = b"".join(reversed(pieces))
    assert (file["filename"], file["size"], file["sha256"]) == ("joined.txt", len(joined),
                                                               hashlib.sha256(joined).hexdigest())
    head = client.head(final.headers["Location"], headers=TUS)
    assert head.headers["Upload-Concat"] == "final;" + " ".join(reversed(parts))
    assert head.headers["Upload-Length"] == str(len(joined))


def test_someone_elses_partial_cannot_be_concatenated(tus_server: Server) -> None:
    bob = tus_server.client("bob")
    part = create(bob, 2, Upload_Concat="partial")
    assert patch(bob, part, 0, b"hi").status_code == 204
    response = tus_server.client("alice").post("/api/tus/", headers={**TUS, "Upload-Concat": f"final;{part}"})
    assert response.status_code == 404


def _finished_partial(client: httpx.Client, data: bytes) -> str:
    part = create(client, len(data), Upload_Concat="partial")
    assert patch(client, part, 0, data).status_code == 204
    return part


def test_a_final_that_fails_gives_its_partials_back(tus_server: Server) -> None:
    """A final refused for its combination (an unfinished partial among them, a joined size over the limit)
    leaves every partial it named usable; only a final that became a file uses them up."""
    client = tus_server.client()
    done, big = _finished_partial(client, b"done"), _finished_partial(client, b"x" * (MAX - 2))
    unfinished = create(client, 10, Upload_Concat="partial")
    assert client.post("/api/tus/", headers={**TUS, "Upload-Concat": f"final;{done} {unfinished}"}).status_code == 400
    assert client.post("/api/tus/", headers={**TUS, "Upload-Concat": f"final;{done} {big}"}).status_code == 413
    for part in (done, big, unfinished):
        assert client.head(part, headers=TUS).status_code == 200
    joined = client.post("/api/tus/", headers={**TUS, "Upload-Concat": f"final;{big}"})
    assert joined.status_code == 201
    assert client.head(big, headers=TUS).status_code == 404 and client.head(done, headers=TUS).status_code == 200


def test_a_refused_final_removes_its_partials(make_server) -> None:
    """A final the content policy refuses is removed whole, its partials too, as any refused upload is."""
    server = make_server(allowed_content_types="image/*")
    client = server.client()
    parts = [_finished_partial(client, b"<!doctype html><html><body>"), _finished_partial(client, b"hi</body></html>")]
    refused = client.post("/api/tus/", headers={**TUS, "Upload-Concat": "final;" + " ".join(parts)})
    assert refused.status_code == 415, refused.text
    assert [client.head(part, headers=TUS).status_code for part in parts] == [404, 404]
    assert no_uploads_left(server) and stored_files(server) == []


def test_refused_creation_stores_nothing(tus_server: Server) -> None:
    before = stored_files(tus_server)
    resumable = resumable_entries(tus_server)
    client = tus_server.client()
    response = client.post("/api/tus/", headers={**OCTETS, "Upload-Length": "3"}, content=b"too long")
    assert response.status_code == 413
    response = client.post("/api/tus/", headers={**OCTETS, "Upload-Length": "4",
                                                 "Upload-Checksum": checksum("sha256", b"nope")}, content=b"four")
    assert response.status_code == 460
    assert stored_files(tus_server) == before
    assert resumable_entries(tus_server) == resumable


@pytest.mark.process  # the sweep is the cleanup command
def test_expired_upload_answers_410_and_the_sweep_removes_it(make_server) -> None:
    server = make_server(tus_upload_ttl="1s")
    client = server.client()
    url = create(client, 10)
    assert patch(client, url, 0, b"01234").status_code == 204
    deadline = time.monotonic() + 10
    while (status := client.head(url, headers=TUS).status_code) == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 410
    assert patch(client, url, 5, b"56789").status_code == 410
    swept = subprocess.run([sys.executable, "-m", "upload_service.cli", "cleanup"], env=server.env,
                           capture_output=True, text=True, timeout=60)
    assert swept.returncode == 0, swept.stderr
    assert '"removed": 1' in swept.stdout
    assert client.head(url, headers=TUS).status_code == 404
    assert resumable_entries(server) == []


def test_unfinished_upload_is_kept_before_it_expires(tus_server: Server) -> None:
    client = tus_server.client()
    url = create(client, 10)
    assert patch(client, url, 0, b"01").status_code == 204
    assert httpx.head(tus_server.url + url, headers=TUS).status_code == 401
    assert offset_of(client, url) == 2


def test_the_periodic_cleanup_sweeps_expired_uploads(make_server) -> None:
    server = make_server(tus_upload_ttl="1s", cleanup_interval="1s")
    client = server.client()
    url = create(client, 10)
    deadline = time.monotonic() + 15
    while client.head(url, headers=TUS).status_code != 404:
        assert time.monotonic() < deadline, "the expired upload was never swept"
        time.sleep(0.05)
    assert no_uploads_left(server)


def test_an_early_answer_does_not_hang_the_connection(tus_server: Server) -> None:
    """A 409 sent before a big body was read: the client's next request on the same client still works."""
    client = tus_server.client()
    client.timeout = httpx.Timeout(20)
    url = create(client, MAX)
    for _ in range(2):
        assert patch(client, url, 5, b"x" * MAX).status_code == 409
        assert offset_of(client, url) == 0
