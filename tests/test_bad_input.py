"""Bad input gets problem+json with the right status and leaves nothing in storage."""

from __future__ import annotations

import base64

import pytest

from .conftest import server_starter, staging_entries, stored_files

GOOD = {"filename": "ok.txt", "content": base64.b64encode(b"fine").decode()}


@pytest.fixture(scope="module")
def refusing(request, tmp_path_factory, storage_backend):
    """A server only the refusal tests below use: each leaves its store as empty as it found it."""
    running = server_starter(request, tmp_path_factory, storage_backend)()
    yield running
    running.stop()


@pytest.fixture
def fresh(refusing):
    """An empty store (an error here means an earlier refusal test kept something: see its failure)."""
    assert stored_files(refusing) == [] and staging_entries(refusing) == [], "an earlier test left files behind"
    return refusing


def _assert_nothing_stored(server):
    assert stored_files(server) == []
    assert staging_entries(server) == []


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400),
    (b'"a string"', 400),
    (b"[]", 400),
    (b'[{"content": "aGVsbG8="}]', 400),
    (b'[{"filename": 5, "content": "aGVsbG8="}]', 400),
    (b'[{"filename": "a.txt", "content": "not base64!"}]', 400),
    (b'[{"filename": "a.txt"}]', 400),
    (b'[{"filename": "a.txt", "content": "aGVsbG8="}, {"filename": "b.txt", "content": "@@@"}]', 400),
    (b'[{"filename": "a.txt", "content": "aGVsbG8="}, {"filename": "", "content": "aGVsbG8="}]', 400),
    (b'[{"filename": "a.txt", "content": "aGk=aGk="}]', 400),  # padding in the middle
    (b'[{"filename": "a.txt", "content": "aGVsbG8"}]', 400),  # a length that is not a multiple of 4
    (b'[{"filename": "a.txt", "content": "' + b"QUJD" * ((1 << 20) - 1) + b'QQ==' + b"QUJD" * 10 + b'"}]', 400),  # ...
    # ... padding that ends a 4 MiB decoding slice, with more after it
    (b'[{"filename": "a.txt", "content": "aGVsbG8="}]\xff', 400),  # bytes after the document, not UTF-8
])
def test_bad_json_bodies(fresh, body, status):
    response = fresh.client().put("/api/upload", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    _assert_nothing_stored(fresh)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_unsupported_content_type_is_415(fresh, content_type):
    response = fresh.client().put("/api/upload", content=b"data", headers={"Content-Type": content_type})
    assert response.status_code == 415
    _assert_nothing_stored(fresh)


def test_multipart_without_files_or_boundary(fresh):
    client = fresh.client()
    assert client.post("/api/upload", data={"field": "value"}, files={}).status_code in (400, 415)
    no_boundary = client.post("/api/upload", content=b"--x--", headers={"Content-Type": "multipart/form-data"})
    assert no_boundary.status_code == 400
    truncated = client.post("/api/upload",
                            content=b'--b\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\nabc',
                            headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert truncated.status_code == 400
    _assert_nothing_stored(fresh)


def test_a_bad_part_refuses_the_whole_multipart_batch(fresh):
    response = fresh.client().post("/api/upload", files=[
        ("file", ("good.txt", b"good", "text/plain")),
        ("file", ("..", b"bad name", "text/plain")),
    ])
    assert response.status_code == 400
    _assert_nothing_stored(fresh)


HOSTILE = {
    "../../etc/passwd": "passwd",
    "/absolute/path.txt": "path.txt",
    "C:\\Windows\\evil.exe": "evil.exe",
    "line\r\nbreak.txt": "linebreak.txt",
    "ctrl\x00\x07.txt": "ctrl.txt",
    "right\u202etxt.exe": "righttxt.exe",
    "<script>alert(1)</script>.html": "script>.html",  # the slash splits it like a path
    "<img src=x onerror=alert(1)>.html": "<img src=x onerror=alert(1)>.html",  # kept as text, escaped when shown
    "a" * 1000 + ".txt": "a" * 251 + ".txt",
}


@pytest.mark.parametrize("raw", list(HOSTILE))
def test_hostile_filenames_become_safe_display_names(server, raw):
    response = server.client().put("/api/upload", json=[{"filename": raw, "content": "aGk="}])
    assert response.status_code == 201, response.text
    name = response.json()["files"][0]["filename"]
    assert name.startswith(HOSTILE[raw][:20])
    assert "/" not in name and "\\" not in name and "\r" not in name and "\n" not in name
    assert len(name.encode()) <= 255
    download = server.client().get(response.json()["files"][0]["url"])
    assert "\n" not in download.headers["content-disposition"]
    for path in server.upload_dir.rglob("*"):
        assert path.resolve().is_relative_to(server.upload_dir.resolve())


@pytest.mark.parametrize("raw", ["", "..", ".", "   ", "\u202e", "/"])
def test_unusable_filenames_are_400(fresh, raw):
    response = fresh.client().put("/api/upload", json=[{"filename": raw, "content": "aGk="}])
    assert response.status_code == 400
    _assert_nothing_stored(fresh)


def test_raw_put_over_the_limit_is_413_before_reading(make_server):
    server = make_server(max_upload_size="1KiB")
    response = server.client().put("/api/files/big.bin", content=b"x" * 2048)
    assert response.status_code == 413
    _assert_nothing_stored(server)


def test_chunked_body_over_the_limit_is_413_while_streaming(make_server):
    server = make_server(max_upload_size="100KiB")

    def body():
        for _ in range(50):
            yield b"y" * 8192

    response = server.client().put("/api/files/big.bin", content=body())
    assert response.status_code == 413
    _assert_nothing_stored(server)


def test_json_body_over_its_cap_is_413(make_server):
    server = make_server(max_json_upload_size="1KiB")
    content = base64.b64encode(b"z" * 2000).decode()
    response = server.client().put("/api/upload", json=[{"filename": "j.txt", "content": content}])
    assert response.status_code == 413
    _assert_nothing_stored(server)


def test_unknown_api_route_is_problem_json(server):
    response = server.client().get("/api/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_too_many_files_in_one_request_is_413_and_stores_nothing(make_server):
    """MAX_FILES_PER_REQUEST bounds JSON and multipart batches alike (a 30-byte JSON item is a whole file)."""
    server = make_server(max_files_per_request="3")
    client = server.client()
    empty = {"filename": "e.txt", "content": ""}
    many_json = client.put("/api/upload", json=[empty] * 4)
    assert many_json.status_code == 413 and many_json.json()["max_files"] == 3
    assert "at most 3 files" in many_json.json()["detail"]
    parts = [("file", (f"{n}.txt", b"x" * 1000)) for n in range(4)]
    many_parts = client.post("/api/upload", files=parts)
    assert many_parts.status_code == 413 and many_parts.headers["content-type"] == "application/problem+json"
    _assert_nothing_stored(server)
    assert client.put("/api/upload", json=[empty] * 3).status_code == 201  # the limit itself is allowed
    assert client.post("/api/upload", files=parts[:3]).status_code == 201
