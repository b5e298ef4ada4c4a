"""Resumable uploads into a file request with a real tus client (tuspy), and the rules of the request on them."""

from __future__ import annotations

import io
import os

import httpx
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError

from .tus import TUS, create


def _request(alice: httpx.Client, **options) -> dict:
    response = alice.post("/api/requests", json={"title": "Big files", **options})
    assert response.status_code == 201, response.text
    return response.json()


def _uploader(server, file_request: dict, data: bytes, name: str, **headers: str):
    tus = tus_client.TusClient(f"{server.url}{file_request['url']}/tus/", headers=headers)
    return tus.uploader(file_stream=io.BytesIO(data), chunk_size=256 * 1024, metadata={"filename": name})


def test_a_tus_client_uploads_into_a_request_in_chunks_and_resumes(server):
    alice = server.client("alice")
    file_request = _request(alice)
    data = os.urandom(1024 * 1024 + 17)
    uploader = _uploader(server, file_request, data, "video.bin", **{"X-Uploader-Name": "Dana"})
    uploader.upload(stop_at=300 * 1024)
    assert uploader.url.startswith(f"{server.url}{file_request['url']}/tus/")
    again = _uploader(server, file_request, data, "video.bin")
    again.url = uploader.url
    again.offset = again.get_offset()  # a new client resumes where the first stopped
    assert again.offset >= 256 * 1024
    again.upload()
    files = {file["filename"]: file for file in alice.get("/api/files").json()["files"]}
    assert files["video.bin"]["size"] == len(data)
    assert files["video.bin"]["metadata"] == {"request": file_request["id"], "uploaded_by": "Dana"}
    assert alice.get(files["video.bin"]["url"]).content == data
    assert alice.get(f"/api/requests/{file_request['id']}").json()["files_received"] == 1


def test_a_request_link_reaches_only_its_own_tus_uploads(server):
    alice = server.client("alice")
    file_request = _request(alice)
    visitor = server.client(None)
    own = create(alice, 100)  # the owner's own upload, through /api/tus
    own_id = own.rsplit("/", 1)[1]
    through_link = visitor.head(f"{file_request['url']}/tus/{own_id}", headers=TUS)
    assert through_link.status_code == 404
    made = visitor.post(f"{file_request['url']}/tus/", headers={**TUS, "Upload-Length": "10"})
    assert made.status_code == 201
    link_upload = made.headers["Location"].rsplit("/", 1)[1]
    assert alice.head(f"/api/tus/{link_upload}", headers=TUS).status_code == 404  # and the other way round
    assert visitor.head(made.headers["Location"], headers=TUS).status_code == 200
    temporary = visitor.post(f"{file_request['url']}/tus/", headers={
        **TUS, "Upload-Concat": "partial", "Upload-Length": "5"})
    assert temporary.status_code == 400  # no concatenation through a link


def test_a_requests_limits_hold_for_tus_uploads(server):
    alice = server.client("alice")
    file_request = _request(alice, max_files=1, max_file_size=1000)
    visitor = server.client(None)
    too_big = visitor.post(f"{file_request['url']}/tus/", headers={**TUS, "Upload-Length": "1001"})
    assert too_big.status_code == 413
    first = _uploader(server, file_request, b"a" * 600, "first.bin")
    second = _uploader(server, file_request, b"b" * 600, "second.bin")
    first.upload(stop_at=300)
    second.upload(stop_at=300)  # both started: only finishing counts
    first.upload()
    try:
        second.upload()
        raise AssertionError("the second upload should have been refused")
    except TusCommunicationError as error:
        assert error.status_code == 409
    names = [file["filename"] for file in alice.get("/api/files").json()["files"]]
    assert "first.bin" in names and "second.bin" not in names
    assert visitor.post(f"{file_request['url']}/tus/", headers={**TUS, "Upload-Length": "5"}).status_code == 409


def test_closing_a_request_stops_its_tus_uploads_midway(server):
    alice = server.client("alice")
    file_request = _request(alice)
    uploader = _uploader(server, file_request, os.urandom(600_000), "late.bin")
    uploader.upload(stop_at=300_000)
    assert alice.delete(f"/api/requests/{file_request['id']}").status_code == 204
    response = server.client(None).head(uploader.url.removeprefix(server.url), headers=TUS)
    assert response.status_code == 404
