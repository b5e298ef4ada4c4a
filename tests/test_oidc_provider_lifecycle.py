"""The OIDC plugin and its provider's life: down while the service starts, up later, its signing keys rotated.

The provider here is a real oidc-provider of the test's own (not the session's), stopped and started again on
one port; its client is static, so it survives the restarts.
"""

from __future__ import annotations

import time

import httpx
import pytest

from .faults import wait_for
from .github_helpers import signed_in_identity
from .oidc_provider import API_AUDIENCE, Client, OpenIDProvider, sign_in, tokens_for
from .servers import free_port

CLIENT = Client("uploads-static", "static-secret-0123456789-0123456789")


def status_with(server, token: str) -> int:
    return server.client(None).get("/api/files", headers={"Authorization": f"Bearer {token}"}).status_code


@pytest.mark.slow  # starts an OpenID Provider of its own, twice
def test_down_at_start_up_then_up_then_its_keys_rotate(make_server, tmp_path):
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    server = make_server(OIDC_PROVIDERS="test", OIDC_TEST_ISSUER=issuer, OIDC_TEST_CLIENT_ID=CLIENT.client_id,
                         OIDC_TEST_CLIENT_SECRET=CLIENT.client_secret, OIDC_TEST_BEARER="true",
                         OIDC_TEST_AUDIENCE=API_AUDIENCE, OIDC_JWKS_REFRESH_INTERVAL="1s")
    browser = server.client(None, follow_redirects=False)

    down = browser.get("/login/test")  # the service started; sign-in says the provider cannot be reached
    assert down.status_code == 503 and "cannot be reached" in down.text

    provider = OpenIDProvider.start(tmp_path, port=port, key_id="old", clients=(CLIENT,))
    try:
        assert sign_in(browser, server.url, "ada").status_code == 302  # discovery retried at this sign-in
        assert signed_in_identity_id(server, browser) == "oidc:test:ada"
        old_token = tokens_for(provider, CLIENT, "ada")["access_token"]
        assert status_with(server, old_token) == 200
    finally:
        provider.stop()

    provider = OpenIDProvider.start(tmp_path, port=port, key_id="new", clients=(CLIENT,))
    try:
        new_token = tokens_for(provider, CLIENT, "ada")["access_token"]
        assert httpx.get(f"{issuer}/jwks").json()["keys"][0]["kid"] == "new"
        # an unknown kid fetches the JWKS again (at most once a second here, OIDC_JWKS_REFRESH_INTERVAL)
        assert wait_for(lambda: status_with(server, new_token) == 200, timeout=10)
        assert status_with(server, old_token) == 401  # the old key is gone from the provider's set
    finally:
        provider.stop()


def config_for(issuer: str, interval: float):
    """A provider's configuration, for the plugin's key cache alone."""
    from upload_service_oidc.config import ProviderConfig

    return ProviderConfig(name="test", issuer=issuer, client_id="x", client_secret="", scopes="openid", title="",
                          allowed=(), bearer=True, audience="x", jwks_refresh_interval=interval)


def signed_in_identity_id(server, browser) -> str | None:
    identity = signed_in_identity(server, browser)
    return identity["id"] if identity else None


async def test_unknown_key_ids_fetch_the_jwks_at_most_once_per_interval(openid_provider):
    from upload_service_oidc.issuer import Issuer

    def issuer(interval: float) -> tuple[Issuer, list[int]]:
        counted, fetches = Issuer(config_for(openid_provider.issuer, interval)), []
        fetch = counted._fetch_keys

        async def counting_fetch():
            fetches.append(1)
            return await fetch()

        counted._fetch_keys = counting_fetch  # type: ignore[method-assign]
        return counted, fetches

    patient, fetches = issuer(30)
    assert [key.kid for key in (await patient.keys("key-1")).keys] == ["key-1"]
    for forged in range(20):  # a stream of tokens naming keys nobody has
        await patient.keys(f"forged-{forged}")
    assert len(fetches) == 1

    eager, fetches = issuer(0)
    await eager.keys("key-1")
    await eager.keys("forged")
    assert len(fetches) == 2  # with no interval, an unknown kid is looked up at once


async def test_a_jwks_that_cannot_be_fetched_again_keeps_the_cached_keys_and_counts_as_a_try(openid_provider):
    from dataclasses import replace

    from upload_service_oidc.issuer import Issuer

    issuer = Issuer(config_for(openid_provider.issuer, 30))
    await issuer.keys("key-1")
    issuer._metadata = replace(await issuer.metadata(), jwks_uri=f"http://127.0.0.1:{free_port()}/jwks")  # now down
    issuer._keys_fetched -= 60  # the interval has passed

    assert [key.kid for key in (await issuer.keys("rotated")).keys] == ["key-1"]  # the try failed: the cached keys
    started = time.monotonic()
    for forged in range(20):
        await issuer.keys(f"forged-{forged}")
    assert time.monotonic() - started < 1  # no further tries within the interval, though the last one failed
