"""File requests end to end against a real server: upload-only links that put files into the owner's files."""

from __future__ import annotations

import hashlib

import httpx

JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what browsers send


def _request(client: httpx.Client, **options) -> dict:
    response = client.post("/api/requests", json={"title": "Photos from the trip", **options})
    assert response.status_code == 201, response.text
    return response.json()


def _owner_files(client: httpx.Client) -> list[dict]:
    return client.get("/api/files", params={"limit": 1000}).json()["files"]


def test_anyone_with_the_link_uploads_into_the_owners_files_and_sees_nothing_else(server):
    alice = server.client("alice")
    secret = alice.put("/api/files/secret.txt", content=b"mine").json()
    file_request = _request(alice)
    assert file_request["url"].startswith("/r/") and file_request["files_received"] == 0
    visitor = server.client(None)
    page = visitor.get(file_request["url"], headers=JSON)
    assert page.status_code == 200
    assert page.json() == {"title": "Photos from the trip", "expires_at": None, "files_left": None,
                           "max_file_size": None}
    html = visitor.get(file_request["url"], headers=HTML)
    assert html.status_code == 200 and "Photos from the trip" in html.text and "secret.txt" not in html.text

    sent = visitor.put(f"{file_request['url']}/files/beach.jpg", content=b"\xff\xd8\xffbeach",
                       headers={"X-Uploader-Name": "Bob", "X-Uploader-Note": "the good ones"})
    assert sent.status_code == 201, sent.text
    beach = hashlib.sha256(b"\xff\xd8\xffbeach").hexdigest()
    assert sent.json() == {"filename": "beach.jpg", "size": 8, "sha256": beach}
    multipart = visitor.post(file_request["url"], headers=JSON,
                             files=[("file", ("a.txt", b"aaa")), ("file", ("b.txt", b"bbb"))],
                             data={"name": "Carol", "note": "two more"})
    assert multipart.status_code == 201, multipart.text
    assert [item["filename"] for item in multipart.json()["files"]] == ["a.txt", "b.txt"]

    received = {file["filename"]: file for file in _owner_files(alice)}
    assert received["beach.jpg"]["metadata"] == {"request": file_request["id"], "uploaded_by": "Bob",
                                                 "uploader_note": "the good ones"}
    assert received["a.txt"]["metadata"]["uploaded_by"] == "Carol"
    assert received["b.txt"]["metadata"]["uploader_note"] == "two more"
    assert alice.get(f"/api/requests/{file_request['id']}").json()["files_received"] == 3
    assert visitor.get(secret["url"]).status_code == 401  # the link is no credential for the owner's files
    assert visitor.get("/api/files").status_code == 401


def test_max_files_and_max_file_size_are_enforced(server):
    alice = server.client("alice")
    file_request = _request(alice, max_files=2, max_file_size=1000)
    visitor = server.client(None)
    assert visitor.put(f"{file_request['url']}/files/big.bin", content=bytes(1001)).status_code == 413
    assert visitor.put(f"{file_request['url']}/files/one.bin", content=bytes(10)).status_code == 201
    too_many = visitor.post(file_request["url"], headers=JSON,
                            files=[("file", ("two.bin", b"2")), ("file", ("three.bin", b"3"))])
    assert too_many.status_code == 409, too_many.text
    assert [file["filename"] for file in _owner_files(alice)].count("two.bin") == 0  # all or nothing
    assert visitor.put(f"{file_request['url']}/files/two.bin", content=b"2").status_code == 201
    assert visitor.put(f"{file_request['url']}/files/four.bin", content=b"4").status_code == 409
    assert visitor.get(file_request["url"], headers=JSON).status_code == 410
    assert alice.get(f"/api/requests/{file_request['id']}").json()["files_received"] == 2


def test_a_closed_request_is_404_and_keeps_its_files(server):
    alice = server.client("alice")
    file_request = _request(alice)
    visitor = server.client(None)
    assert visitor.put(f"{file_request['url']}/files/kept.txt", content=b"kept").status_code == 201
    assert alice.delete(f"/api/requests/{file_request['id']}").status_code == 204
    assert visitor.put(f"{file_request['url']}/files/late.txt", content=b"late").status_code == 404
    assert visitor.get(file_request["url"], headers=JSON).status_code == 404
    assert "kept.txt" in [file["filename"] for file in _owner_files(alice)]


def test_a_password_protected_request_needs_the_password_first(server):
    alice = server.client("alice")
    file_request = _request(alice, password="open sesame")
    visitor = server.client(None)
    assert visitor.put(f"{file_request['url']}/files/x.txt", content=b"x").status_code == 401
    assert visitor.post(file_request["url"], json={"password": "open sesame"}, headers=JSON).status_code == 204
    assert visitor.put(f"{file_request['url']}/files/x.txt", content=b"x").status_code == 201


def test_the_owners_quota_and_content_policy_apply_to_request_uploads(make_server):
    server = make_server(user_quota_files="2", allowed_content_types="text/plain")
    alice = server.client("alice")
    file_request = _request(alice)
    visitor = server.client(None)
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)
    refused = visitor.put(f"{file_request['url']}/files/notes.txt", content=png)
    assert refused.status_code == 415, refused.text
    assert visitor.put(f"{file_request['url']}/files/one.txt", content=b"one").status_code == 201
    assert alice.put("/api/files/mine.txt", content=b"mine").status_code == 201
    over = visitor.put(f"{file_request['url']}/files/two.txt", content=b"two")
    assert over.status_code == 413 and over.json()["limit"] == 2  # the owner's quota, not the visitor's
    assert alice.get(f"/api/requests/{file_request['id']}").json()["files_received"] == 1  # refused ones uncounted


def test_public_link_routes_count_toward_the_per_address_limit_and_carry_the_uis_headers(make_server):
    server = make_server(rate_limit_per_address="4/minute")
    alice = server.client("alice")
    file_request = _request(alice)
    visitor = server.client(None)
    page = visitor.get(file_request["url"], headers={"Accept": "text/html"})
    assert "default-src" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    statuses = [visitor.get(f"/s/{'x' * 32}", headers=JSON).status_code for _ in range(5)]
    assert statuses[-1] == 429 and 404 in statuses
