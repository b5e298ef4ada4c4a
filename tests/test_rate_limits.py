"""RATE_LIMIT (per identity) and RATE_LIMIT_PER_ADDRESS (per trusted client address) against a real server."""

from __future__ import annotations

import pytest

from upload_service.settings import Settings

from .conftest import object_files
from .servers import free_port, start_in_process

pytestmark = pytest.mark.usefixtures("clear_of_a_minute_edge")  # limits per minute: see the fixture


def assert_limited(response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "too many requests" in response.json()["detail"]


def test_each_identity_has_its_own_budget(make_server):
    server = make_server(rate_limit="3/minute")
    alice = server.client("alice")
    assert [alice.get("/api/files").status_code for _ in range(3)] == [200, 200, 200]
    assert_limited(alice.put("/api/files/a.txt", content=b"over the limit"))
    assert server.client("bob").get("/api/files").status_code == 200
    assert alice.get("/healthz").status_code == 200  # only the API counts


def test_a_refused_upload_stores_nothing(make_server):
    server = make_server(rate_limit="1/minute")
    client = server.client()
    assert client.put("/api/files/a.txt", content=b"a").status_code == 201
    assert_limited(client.put("/api/files/b.txt", content=b"b" * 100_000))
    assert len(object_files(server.upload_dir / "objects" / "files")) == 1


def test_the_address_limit_counts_anonymous_requests_too(make_server):
    server = make_server(rate_limit_per_address="4/minute")
    anonymous = server.client(None)
    assert [anonymous.get("/api/files").status_code for _ in range(2)] == [401, 401]  # guessing costs budget
    assert [server.client("bob").get("/api/files").status_code for _ in range(2)] == [200, 200]
    assert_limited(server.client("carol").get("/api/files"))  # same address, whoever signs in


def test_the_address_is_the_one_a_trusted_proxy_forwards(make_server):
    server = make_server(rate_limit_per_address="2/minute", forwarded_allow_ips="127.0.0.1")
    client = server.client()
    one, two = {"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2"}
    assert [client.get("/api/files", headers=one).status_code for _ in range(2)] == [200, 200]
    assert_limited(client.get("/api/files", headers=one))
    assert client.get("/api/files", headers=two).status_code == 200


def test_an_untrusted_forwarded_header_is_not_a_way_around_the_limit(make_server):
    server = make_server(rate_limit_per_address="2/minute")
    client = server.client()
    answers = [client.get("/api/files", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(3)]
    assert answers == [200, 200, 429]


@pytest.mark.parametrize("value", ["lots", "5 per fortnight", "/minute"])
def test_a_malformed_limit_is_a_settings_error(value):
    with pytest.raises(ValueError, match="100/minute"):
        Settings(rate_limit=value)


def test_shared_limits_need_a_redis_that_answers(tmp_path):
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with pytest.raises(RuntimeError, match=r"rate limits: Redis at .* does not answer"):
        start_in_process(tmp_path, rate_limit="10/minute", redis_url=nobody)
