"""Streamed uploads (multipart and raw PUT) and downloads with Range and ETag."""

from __future__ import annotations

import hashlib
import os

import httpx


def test_multipart_upload_of_several_files(server):
    first, second = os.urandom(300_000), b"hello multipart"
    response = server.client().post("/api/upload", files=[
        ("file", ("one.bin", first, "application/octet-stream")),
        ("file", ("two.txt", second, "text/plain")),
    ])
    assert response.status_code == 201, response.text
    one, two = response.json()["files"]
    assert (one["filename"], one["size"], one["sha256"]) == ("one.bin", len(first), hashlib.sha256(first).hexdigest())
    assert (two["filename"], two["content_type"]) == ("two.txt", "text/plain")
    assert server.client().get(one["url"]).content == first


def test_multipart_temporary_upload_gives_tokens(server):
    response = server.client().post("/api/upload_temporary", files={"file": ("t.txt", b"x", "text/plain")})
    assert response.status_code == 201
    assert response.json()["files"][0]["token"]


def test_raw_put_streams_the_body(server):
    data = os.urandom(3 * 1024 * 1024 + 17)

    def body():
        for start in range(0, len(data), 65536):
            yield data[start:start + 65536]

    response = server.client().put("/api/files/raw%20name.bin", content=body())  # chunked: no Content-Length
    assert response.status_code == 201, response.text
    file = response.json()
    assert file["filename"] == "raw name.bin"
    assert file["sha256"] == hashlib.sha256(data).hexdigest()
    assert response.headers["Location"] == file["url"]
    assert server.client().get(file["url"]).content == data


def test_raw_put_temporary(server):
    response = server.client().put("/api/files/t.bin", params={"temporary": "1"}, content=b"abc")
    assert response.status_code == 201
    assert response.json()["temporary"] is True and response.json()["token"]


def test_download_headers_range_and_etag(server):
    client = server.client()
    data = bytes(range(256)) * 400
    file = client.put("/api/files/report%20%C3%A9t%C3%A9.pdf", content=data).json()
    full = client.get(file["url"])
    assert full.status_code == 200 and full.content == data
    assert full.headers["x-content-type-options"] == "nosniff"
    assert full.headers["content-disposition"].startswith("attachment;")
    assert "filename*=UTF-8''report%20%C3%A9t%C3%A9.pdf" in full.headers["content-disposition"]
    assert full.headers["accept-ranges"] == "bytes"
    etag = full.headers["etag"]
    assert etag == f'"{file["sha256"]}"'

    part = client.get(file["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get(file["url"], headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    open_ended = client.get(file["url"], headers={"Range": f"bytes={len(data) - 5}-"})
    assert open_ended.content == data[-5:]
    outside = client.get(file["url"], headers={"Range": f"bytes={len(data) + 10}-"})
    assert outside.status_code == 416
    assert outside.headers["content-range"] == f"bytes */{len(data)}"
    stale_if_range = client.get(file["url"], headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale_if_range.status_code == 200 and len(stale_if_range.content) == len(data)

    assert client.get(file["url"], headers={"If-None-Match": etag}).status_code == 304
    head = client.head(file["url"])
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))


def test_list_is_newest_first_and_paginated(make_server):
    server = make_server()
    client = server.client("carol")
    ids = [client.put(f"/api/files/n{i}.txt", content=b"x").json()["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        page = client.get("/api/files", params={"limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [f["id"] for f in page["files"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert client.get("/api/files", params={"limit": 0}).status_code == 400


def test_file_info_and_delete(server):
    client = server.client()
    file = client.put("/api/files/gone.txt", content=b"bye").json()
    info = client.get(f"/api/files/{file['id']}")
    assert info.status_code == 200 and info.json()["id"] == file["id"]
    assert info.json()["created_at"].endswith("Z") and "." in info.json()["created_at"]
    assert client.delete(f"/api/files/{file['id']}").status_code == 204
    assert client.get(f"/api/files/{file['id']}").status_code == 404
    assert client.get(file["url"]).status_code == 404
    assert client.delete(f"/api/files/{file['id']}").status_code == 404


def test_health_and_readiness(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["storage"] == server.backend
