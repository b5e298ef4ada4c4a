"""GitHub sign-in inside a host app: routes under the prefix, the host's own session data left alone."""

from __future__ import annotations

import httpx
import pytest

from .github_helpers import csrf_from, hypercorn, query


@pytest.mark.process  # the host app under Hypercorn's own command
def test_sign_in_under_a_prefix_keeps_the_host_session(tmp_path, github_double):
    github_double.add_user("octocat")
    host = hypercorn("tests.github_embedded_host:create_host_app()", tmp_path, github_double.settings())
    with host as (url, _), httpx.Client(base_url=url, follow_redirects=False) as client:
        assert client.get("/visit").json() == {"visits": 1}
        page = client.get("/uploads/")
        assert 'action="/uploads/login"' in page.text

        start = client.post("/uploads/login", data={"csrf_token": csrf_from(page.text)})
        assert query(start.headers["Location"])["redirect_uri"] == f"{url}/uploads/login/authorized"
        callback = client.get(client.get(start.headers["Location"]).headers["Location"])

        assert callback.status_code == 302 and callback.headers["Location"] == "/uploads/"
        assert "Signed in as octocat" in client.get("/uploads/").text
        assert client.get("/uploads/api/files").status_code == 200
        assert client.get("/visit").json() == {"visits": 2}  # the host's session data survived the sign-in
        assert client.get("/login").status_code == 404  # nothing of the service outside its prefix
