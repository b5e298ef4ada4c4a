"""FORWARDED_ALLOW_IPS: X-Forwarded-For/-Proto count only when the connection comes from a trusted proxy."""

from __future__ import annotations

import pytest
from quart import request

from upload_service.app import create_app
from upload_service.errors import StartupError
from upload_service.proxies import PUBLIC_HOST, TrustedProxies, parse_networks
from upload_service.settings import Settings


async def seen_by_app(peer: str, forwarded_for: str | None, trusted: list[str], proto: str | None = None) -> tuple:
    """The (client address, scheme) the app sees for one request from ``peer`` with those headers."""
    seen: list[tuple] = []

    async def app(scope, receive, send) -> None:
        seen.append((scope["client"][0], scope["scheme"]))

    headers = [(b"host", b"files.example")]
    if forwarded_for is not None:
        headers.append((b"x-forwarded-for", forwarded_for.encode()))
    if proto is not None:
        headers.append((b"x-forwarded-proto", proto.encode()))
    scope = {"type": "http", "client": (peer, 5000), "scheme": "http", "headers": headers}
    await TrustedProxies(app, parse_networks(trusted))(scope, None, None)
    return seen[0]


@pytest.mark.parametrize(("peer", "forwarded_for", "trusted", "proto", "expected"), [
    ("127.0.0.1", "203.0.113.9", ["127.0.0.1"], "https", ("203.0.113.9", "https")),
    # an untrusted peer cannot claim another address or scheme
    ("198.51.100.7", "203.0.113.9", ["127.0.0.1"], "https", ("198.51.100.7", "http")),
    # what the client wrote itself sits left of what our proxies appended: the right-most untrusted hop wins
    ("10.0.0.5", "1.2.3.4, 203.0.113.9, 10.0.0.2", ["10.0.0.0/8"], None, ("203.0.113.9", "http")),
    ("10.0.0.5", "10.0.0.3, 10.0.0.2", ["10.0.0.0/8"], None, ("10.0.0.3", "http")),
    ("10.0.0.5", None, ["10.0.0.0/8"], None, ("10.0.0.5", "http")),
    ("192.0.2.1", "203.0.113.9", ["*"], "https", ("203.0.113.9", "https")),
    ("::1", "2001:db8::5", ["::1"], None, ("2001:db8::5", "http")),
])
async def test_client_address_comes_from_trusted_proxies_only(peer, forwarded_for, trusted, proto, expected) -> None:
    assert await seen_by_app(peer, forwarded_for, trusted, proto) == expected


async def test_create_app_applies_the_setting() -> None:
    for trusted, expected in (("127.0.0.0/8", "203.0.113.9"), ("", "127.0.0.1")):
        app = create_app(Settings(secret_key="k" * 32, forwarded_allow_ips=trusted))

        @app.route("/whoami")
        async def whoami() -> str:
            return request.remote_addr or ""

        response = await app.test_client().get("/whoami", headers={"X-Forwarded-For": "203.0.113.9"},
                                               scope_base={"client": ("127.0.0.1", 5000)})
        assert await response.get_data(as_text=True) == expected


def test_a_malformed_network_is_a_startup_error() -> None:
    with pytest.raises(StartupError, match="FORWARDED_ALLOW_IPS"):
        create_app(Settings(secret_key="k" * 32, forwarded_allow_ips="10.0.0.0/33"))


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    ("127.0.0.1", [(b"host", b"files.example"), (b"x-forwarded-host", b"uploads.example.org")], "uploads.example.org"),
    ("127.0.0.1", [(b"host", b"Files.Example:8443")], "files.example:8443"),  # what the trusted proxy passed on
    ("198.51.100.7", [(b"host", b"files.example"), (b"x-forwarded-host", b"uploads.example.org")], None),
    ("127.0.0.1", [(b"host", b"files.example"), (b"x-forwarded-host", b"evil.example/path@x")], None),
])
async def test_the_public_host_comes_from_trusted_proxies_only(peer, headers, expected) -> None:
    seen: list = []

    async def app(scope, receive, send) -> None:
        seen.append(scope.get(PUBLIC_HOST))

    scope = {"type": "http", "client": (peer, 5000), "scheme": "http", "headers": headers}
    await TrustedProxies(app, parse_networks(["127.0.0.1"]))(scope, None, None)
    assert seen == [expected]
