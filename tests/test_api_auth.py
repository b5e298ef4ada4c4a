"""Who may do what: no credentials, bad credentials, other people's files, CSRF on cookie sessions."""

from __future__ import annotations

import httpx
import pytest

ROUTES = [
    ("GET", "/api/files"),
    ("PUT", "/api/upload"),
    ("POST", "/api/upload_temporary"),
    ("POST", "/api/persist"),
    ("PUT", "/api/files/x.txt"),
    ("GET", "/api/files/zzzzzzzzzzzzzzzzzzzz"),
    ("DELETE", "/api/files/zzzzzzzzzzzzzzzzzzzz"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_credentials_is_401_with_bearer_challenge(server, method, path):
    response = httpx.request(method, server.url + path, content=b"[]")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 401 and problem["title"] and problem["detail"] and problem["type"]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_bad_token_is_401_invalid_token(server, method, path):
    response = httpx.request(method, server.url + path, headers={"Authorization": "Bearer wrong-token-123"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_other_users_files_are_not_found(server):
    alice, bob = server.client("alice"), server.client("bob")
    file = alice.put("/api/files/secret.txt", content=b"alice only").json()
    assert bob.get(f"/api/files/{file['id']}").status_code == 404
    assert bob.get(file["url"]).status_code == 404
    assert bob.delete(f"/api/files/{file['id']}").status_code == 404
    assert file["id"] not in [f["id"] for f in bob.get("/api/files").json()["files"]]
    assert alice.get(file["url"]).content == b"alice only"


def test_dev_session_needs_csrf_for_writes(make_server):
    server = make_server(dev="1", dev_token="dev-token-for-tests")
    browser = httpx.Client(base_url=server.url, follow_redirects=False)
    page = browser.get("/")
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    signed_in = browser.post("/login/dev", data={"csrf_token": csrf})
    assert signed_in.status_code == 303
    assert "HttpOnly" in signed_in.headers["set-cookie"] and "SameSite=Lax" in signed_in.headers["set-cookie"]
    assert browser.get("/api/files").status_code == 200
    csrf = browser.get("/").text.split('name="csrf_token" value="')[1].split('"')[0]
    refused = browser.put("/api/files/a.txt", content=b"x")
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    accepted = browser.put("/api/files/a.txt", content=b"x", headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201
    assert browser.post("/logout", data={"csrf_token": "nope"}).status_code == 403
    assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert browser.get("/api/files").status_code == 401


def test_dev_token_works_with_curl_style_bearer(make_server):
    server = make_server(dev="1", dev_token="dev-token-for-tests")
    response = httpx.get(server.url + "/api/files", headers={"Authorization": "Bearer dev-token-for-tests"})
    assert response.status_code == 200


def test_no_js_form_upload_redirects_back(make_server):
    server = make_server(dev="1", dev_token="dev-token-for-tests")
    browser = httpx.Client(base_url=server.url)
    csrf = browser.get("/").text.split('name="csrf_token" value="')[1].split('"')[0]
    browser.post("/login/dev", data={"csrf_token": csrf})
    csrf = browser.get("/").text.split('name="csrf_token" value="')[1].split('"')[0]
    response = browser.post("/api/upload", data={"csrf_token": csrf, "redirect": "1"},
                            files={"file": ("form.txt", b"from a plain form", "text/plain")}, follow_redirects=False)
    assert response.status_code == 303
    assert "form.txt" in browser.get("/").text
    forged = browser.post("/api/upload", data={"csrf_token": "forged"}, files={"file": ("x.txt", b"x")})
    assert forged.status_code == 403
