"""Share links end to end against a real server: the owner's API, the public page, downloads and their limit,
expiry, revocation, passwords, and the zip."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import httpx
import pytest

from upload_service import owner_key

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what browsers send


def _upload(client: httpx.Client, name: str = "report.txt", data: bytes = b"quarterly numbers") -> dict:
    response = client.put(f"/api/files/{name}", content=data)
    assert response.status_code == 201, response.text
    return response.json()


def _share(client: httpx.Client, files: list[dict], **options) -> dict:
    response = client.post("/api/shares", json={"files": [file["id"] for file in files], **options})
    assert response.status_code == 201, response.text
    return response.json()


def _visitor(server) -> httpx.Client:
    return server.client(None)


def test_a_share_link_lets_anyone_download_the_shared_files(server):
    alice = server.client("alice")
    report, chart = _upload(alice, "report.txt", b"numbers"), _upload(alice, "chart.csv", b"a,b\n1,2\n")
    other = _upload(alice, "private.txt", b"not shared")
    share = _share(alice, [report, chart], note="For the board")
    assert share["url"].startswith("/s/") and len(share["url"].rsplit("/", 1)[1]) >= 22  # >= 128 bits
    assert share["downloads"] == 0 and share["max_downloads"] is None and share["has_password"] is False
    assert [file["id"] for file in share["files"]] == [report["id"], chart["id"]]

    visitor = _visitor(server)
    page = visitor.get(share["url"], headers=JSON)
    assert page.status_code == 200
    listed = page.json()
    assert [file["filename"] for file in listed["files"]] == ["report.txt", "chart.csv"]
    assert listed["note"] == "For the board" and listed["downloads_left"] is None
    assert "private.txt" not in page.text and "alice" not in page.text
    download = visitor.get(listed["files"][0]["url"])
    assert download.status_code == 200 and download.content == b"numbers"
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["etag"] == f'"{report["sha256"]}"'
    html = visitor.get(share["url"], headers=HTML)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert "report.txt" in html.text and "private.txt" not in html.text
    assert visitor.get(f"{share['url']}/files/{other['id']}").status_code == 404
    assert alice.get(f"/api/shares/{share['id']}").json()["downloads"] == 1


def test_only_downloads_from_byte_zero_count_and_the_limit_answers_410(server):
    alice = server.client("alice")
    file = _upload(alice, "big.bin", bytes(range(256)) * 40)
    share = _share(alice, [file], max_downloads=2)
    visitor = _visitor(server)
    url = visitor.get(share["url"], headers=JSON).json()["files"][0]["url"]
    for _ in range(3):  # the page, HEAD, a resumed Range and a 304 never count
        assert visitor.get(share["url"]).status_code == 200
        assert visitor.head(url).status_code == 200
        assert visitor.get(url, headers={"Range": "bytes=100-"}).status_code == 206
        assert visitor.get(url, headers={"If-None-Match": f'"{file["sha256"]}"'}).status_code == 304
    assert alice.get(f"/api/shares/{share['id']}").json()["downloads"] == 0
    assert visitor.get(url, headers={"Range": "bytes=0-9"}).status_code == 206  # starts at byte 0: counts
    assert visitor.get(url).status_code == 200
    assert alice.get(f"/api/shares/{share['id']}").json()["downloads"] == 2
    gone = visitor.get(url)
    assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
    assert visitor.get(share["url"], headers=HTML).status_code == 410
    assert visitor.get(share["url"], headers=JSON).status_code == 410


def test_revoked_and_unknown_links_look_the_same(server):
    alice = server.client("alice")
    share = _share(alice, [_upload(alice)])
    visitor = _visitor(server)
    assert alice.delete(f"/api/shares/{share['id']}").status_code == 204
    revoked = visitor.get(share["url"], headers=JSON)
    unknown = visitor.get("/s/" + "A" * 32, headers=JSON)
    assert revoked.status_code == unknown.status_code == 404
    assert revoked.json() == unknown.json()
    assert alice.get(f"/api/shares/{share['id']}").status_code == 404


def test_only_the_owner_sees_and_revokes_a_share(server):
    alice, bob = server.client("alice"), server.client("bob")
    file = _upload(alice)
    share = _share(alice, [file])
    assert bob.get(f"/api/shares/{share['id']}").status_code == 404
    assert bob.delete(f"/api/shares/{share['id']}").status_code == 404
    assert share["id"] not in [listed["id"] for listed in bob.get("/api/shares").json()["shares"]]
    assert share["id"] in [listed["id"] for listed in alice.get("/api/shares").json()["shares"]]
    refused = bob.post("/api/shares", json={"files": [file["id"]]})
    assert refused.status_code == 404  # another's file is not found, like one that does not exist


def test_bad_share_requests_are_clear_problems(server):
    alice = server.client("alice")
    file = _upload(alice)
    temporary = alice.put("/api/files/draft.txt?temporary=1", content=b"draft").json()
    cases = [
        ({"files": []}, 400), ({"files": [file["id"], file["id"]]}, 400), ({"files": [file["id"]], "bogus": 1}, 400),
        ({"files": [file["id"]], "expires_in": "forever"}, 400), ({"files": [file["id"]], "expires_in": -5}, 400),
        ({"files": [file["id"]], "max_downloads": 0}, 400), ({"files": [file["id"]], "password": ""}, 400),
        ({"files": [temporary["id"]]}, 409), ({"files": ["0" * 20]}, 404), ([1, 2], 400),
    ]
    for body, status in cases:
        response = alice.post("/api/shares", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert alice.post("/api/shares", content=b"files=1", headers={"Content-Type": "text/plain"}).status_code == 415
    assert server.client(None).post("/api/shares", json={"files": [file["id"]]}).status_code == 401


def test_an_expired_link_answers_410(server):
    alice = server.client("alice")
    share = _share(alice, [_upload(alice)], expires_in=1)
    visitor = _visitor(server)
    from .faults import wait_for
    wait_for(lambda: visitor.get(share["url"], headers=JSON).status_code == 410, timeout=5)
    assert visitor.get(share["url"], headers=HTML).status_code == 410


def test_a_password_protects_the_link_and_unlocks_it_for_that_link_only(server):
    alice = server.client("alice")
    file = _upload(alice, "secret.txt", b"secret")
    share = _share(alice, [file], password="correct horse")
    other = _share(alice, [file], password="correct horse")
    assert share["has_password"] is True and "password" not in str(share).replace("has_password", "")
    visitor = _visitor(server)
    locked = visitor.get(share["url"], headers=JSON)
    assert locked.status_code == 401
    assert visitor.get(f"{share['url']}/files/{file['id']}").status_code == 401
    form = visitor.get(share["url"], headers=HTML)
    assert form.status_code == 401 and 'type="password"' in form.text
    assert visitor.post(share["url"], json={"password": "wrong"}, headers=JSON).status_code == 403
    unlocked = visitor.post(share["url"], json={"password": "correct horse"}, headers=JSON)
    assert unlocked.status_code == 204
    cookie = unlocked.headers["set-cookie"]
    assert "HttpOnly" in cookie and f"Path={share['url']}" in cookie
    assert visitor.get(share["url"], headers=JSON).status_code == 200
    assert visitor.get(f"{share['url']}/files/{file['id']}").content == b"secret"
    assert visitor.get(other["url"], headers=JSON).status_code == 401  # the cookie opens this link only
    browser = visitor.post(share["url"], data={"password": "correct horse"}, headers=HTML)
    assert browser.status_code == 303 and browser.headers["location"] == share["url"]


def test_wrong_passwords_are_limited_per_address(server):
    alice = server.client("alice")
    share = _share(alice, [_upload(alice)], password="s3cret-enough")
    visitor = _visitor(server)
    statuses = [visitor.post(share["url"], json={"password": f"guess {n}"}, headers=JSON).status_code
                for n in range(7)]
    assert statuses[:5] == [403] * 5 and statuses[5:] == [429, 429]
    limited = visitor.post(share["url"], json={"password": "s3cret-enough"}, headers=JSON)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0  # not even checked


def test_deleting_a_file_removes_it_from_its_shares(server):
    alice = server.client("alice")
    kept, deleted = _upload(alice, "kept.txt"), _upload(alice, "gone.txt")
    share = _share(alice, [kept, deleted])
    only = _share(alice, [deleted])
    assert alice.delete(f"/api/files/{deleted['id']}").status_code == 204
    from .faults import wait_for
    wait_for(lambda: [f["id"] for f in alice.get(f"/api/shares/{share['id']}").json()["files"]] == [kept["id"]])
    wait_for(lambda: alice.get(f"/api/shares/{only['id']}").status_code == 404)  # nothing left: revoked
    visitor = _visitor(server)
    assert visitor.get(f"{share['url']}/files/{deleted['id']}").status_code == 404


def test_the_zip_holds_every_file_and_counts_once(server):
    alice = server.client("alice")
    files = [_upload(alice, "a.txt", b"first"), _upload(alice, "a.txt", b"second"),
             _upload(alice, "photo.jpg", b"\xff\xd8\xff" + bytes(5000))]
    share = _share(alice, files, max_downloads=1)
    visitor = _visitor(server)
    assert visitor.head(f"{share['url']}/zip").status_code == 200
    response = visitor.get(f"{share['url']}/zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["a (2).txt", "a.txt", "photo.jpg"]
    assert {archive.read(name) for name in ("a.txt", "a (2).txt")} == {b"first", b"second"}
    assert alice.get(f"/api/shares/{share['id']}").json()["downloads"] == 1
    assert visitor.get(f"{share['url']}/zip").status_code == 410


@pytest.mark.parametrize("path", ["/s/short", "/s/" + "%0A" * 30, "/s/" + "x" * 400])
def test_malformed_tokens_are_plain_404s(server, path):
    assert _visitor(server).get(path, headers=JSON).status_code == 404


def test_the_sweep_removes_links_long_expired(upload_service_factory):
    running = upload_service_factory()
    owner = running.client()
    file = owner.put("/api/files/old.txt", content=b"old").json()
    fresh = owner.post("/api/shares", json={"files": [file["id"]], "expires_in": "1d"}).json()
    stale = owner.post("/api/shares", json={"files": [file["id"]], "expires_in": 1}).json()
    links = running.service.state("sharing")["links"]

    async def backdate() -> None:  # as if it had expired 31 days ago
        record = await links.get("share", owner_key("token:tester"), stale["id"])
        await links.change(record, lambda current: setattr(current, "expires_at",
                                                           current.expires_at - timedelta(days=31)))

    running.run(backdate())
    assert running.run(running.service.sweep()) >= 1
    assert owner.get(f"/api/shares/{stale['id']}").status_code == 404
    assert owner.get(f"/api/shares/{fresh['id']}").status_code == 200
