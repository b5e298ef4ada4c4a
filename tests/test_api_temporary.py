"""Temporary uploads and POST /api/persist: once only, expiry, ownership, forged tokens."""

from __future__ import annotations

import base64
import time

import pytest

from .conftest import stored_files


def _temporary(client, name="draft.txt", data=b"draft") -> dict:
    response = client.put("/api/upload_temporary",
                          json=[{"filename": name, "content": base64.b64encode(data).decode()}])
    assert response.status_code == 201, response.text
    return response.json()["files"][0]


def test_persist_makes_the_file_persistent_with_metadata(server):
    alice = server.client("alice")
    temp = _temporary(alice)
    assert temp["id"] not in [f["id"] for f in alice.get("/api/files").json()["files"]]
    assert temp["id"] in [f["id"] for f in alice.get("/api/files", params={"temporary": 1}).json()["files"]]
    response = alice.post("/api/persist", json={"tokens": [temp["token"]], "metadata": {"description": "Q3 report"}})
    assert response.status_code == 201
    (persisted,) = response.json()["files"]
    assert persisted["id"] == temp["id"]
    assert persisted["temporary"] is False and persisted["expires_at"] is None
    assert persisted["metadata"] == {"description": "Q3 report"}
    assert "token" not in persisted
    listed = alice.get("/api/files").json()["files"]
    assert persisted["id"] in [f["id"] for f in listed]
    assert temp["id"] not in [f["id"] for f in alice.get("/api/files", params={"temporary": 1}).json()["files"]]
    assert alice.get(persisted["url"]).content == b"draft"


def test_a_token_persists_only_once(server):
    alice = server.client("alice")
    token = _temporary(alice)["token"]
    assert alice.post("/api/persist", json={"tokens": [token]}).status_code == 201
    again = alice.post("/api/persist", json={"tokens": [token]})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


def test_someone_elses_token_is_refused(server):
    token = _temporary(server.client("alice"))["token"]
    response = server.client("bob").post("/api/persist", json={"tokens": [token]})
    assert response.status_code == 403
    assert server.client("alice").post("/api/persist", json={"tokens": [token]}).status_code == 201


@pytest.mark.parametrize("token", ["forged", "eyJmIjoieCJ9.aaaa.bbbb", "", 42])
def test_forged_tokens_are_refused(server, token):
    response = server.client().post("/api/persist", json={"tokens": [token]})
    assert response.status_code == 400
    assert response.json()["status"] == 400


def test_persist_body_must_be_well_formed(server):
    client = server.client()
    malformed = client.post("/api/persist", content=b"{nope", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert client.post("/api/persist", json={"tokens": []}).status_code == 400
    assert client.post("/api/persist", json={"tokens": ["x"], "metadata": []}).status_code == 400


def test_expired_token_is_gone_and_swept(make_server):
    server = make_server(temp_upload_ttl="1s", cleanup_interval="1s")
    alice = server.client()
    temp = _temporary(alice)
    deadline = time.monotonic() + 10
    while alice.get(f"/api/files/{temp['id']}").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)  # listed until its 1 s are up
    assert alice.get(f"/api/files/{temp['id']}").status_code == 404
    response = alice.post("/api/persist", json={"tokens": [temp["token"]]})
    assert response.status_code == 410
    deadline = time.monotonic() + 5
    while stored_files(server, "temp/") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored_files(server, "temp/") == []
