"""The service's outgoing HTTPS clients (GitHub token checks and sign-ins, OpenID Connect, webhooks) share the
process's one TLS context: a new one loads the CA store, about 27 ms of CPU per call. They still check
certificates, against ``SSL_CERT_FILE`` when set (how an operator trusts a private CA), here against the GitHub
double served over TLS with a certificate of its own."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from authlib.common.errors import AuthlibBaseError

from upload_service import tls_context
from upload_service.builtin.github.client import GitHubAPI, GitHubUnavailable, http_client as github_client
from upload_service.builtin.github.config import GitHubConfig
from upload_service.builtin.github.oauth import oauth_client
from upload_service_oidc.issuer import http_client as oidc_client
from upload_service_webhooks.outbox import http_client as webhooks_client

from .github_double import GitHubDouble
from .github_helpers import self_signed


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def double(certificate: tuple[Path, Path]) -> Iterator[GitHubDouble]:
    running = GitHubDouble(certificate).start()
    running.add_user("octocat")
    yield running
    running.stop()


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]) -> None:
    """The double's certificate is this process's one CA, as an operator's private CA would be."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def contexts_made(monkeypatch: pytest.MonkeyPatch) -> list[ssl.SSLContext]:
    """Every ``ssl.SSLContext`` made from here on (httpx2 makes one per client unless given ``verify=``)."""
    made: list[ssl.SSLContext] = []
    original = ssl.SSLContext.__new__

    def counting(cls: type[ssl.SSLContext], *args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(cls, *args, **kwargs)
        made.append(context)
        return context

    monkeypatch.setattr(ssl.SSLContext, "__new__", staticmethod(counting))
    return made


async def github_token_check(double: GitHubDouble) -> Any:
    async with github_client() as http:
        return (await GitHubAPI(double.api_url, double.issue_token("octocat"), http).user()).login


async def github_code_exchange(double: GitHubDouble) -> Any:
    config = GitHubConfig(client_id=double.client_id, client_secret=double.client_secret, url=double.url,
                          api_url=double.api_url, token_cache_ttl=60, allowed_users=frozenset(),
                          allowed_orgs=frozenset())
    async with oauth_client(config, "http://127.0.0.1/login/authorized") as client:
        try:
            await client.fetch_token(config.token_url, code="unknown", code_verifier="v" * 48)
        except AuthlibBaseError as refused:  # the double's answer to an unknown code
            return refused.error


async def oidc_fetch(double: GitHubDouble) -> Any:
    async with oidc_client() as http:
        answer = await http.get(f"{double.api_url}/user", headers={"Authorization": "Bearer unknown"})
        return answer.status_code


async def webhooks_delivery(double: GitHubDouble) -> Any:
    async with webhooks_client(5.0) as http:
        return (await http.post(f"{double.url}/hook", content=b"{}")).status_code


CALLS: dict[str, tuple[Callable[[GitHubDouble], Awaitable[Any]], Any]] = {
    "github token check": (github_token_check, "octocat"),
    "github code exchange": (github_code_exchange, "bad_verification_code"),
    "oidc fetch": (oidc_fetch, 401),
    "webhooks delivery": (webhooks_delivery, 404),
}


@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("name", CALLS)
async def test_a_second_call_makes_no_tls_context(name: str, double: GitHubDouble,
                                                  contexts_made: list[ssl.SSLContext]) -> None:
    call, expected = CALLS[name]
    first = await call(double)
    after_first = len(contexts_made)
    second = await call(double)

    assert first == second == expected  # both went through TLS, the double's certificate checked
    assert len(contexts_made) == after_first, f"the second {name} made a TLS context of its own"
    assert after_first <= 1  # at most the shared one, the first time this CA setting is seen


async def test_certificates_are_still_checked(double: GitHubDouble, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    other_ca, _ = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))

    with pytest.raises(GitHubUnavailable, match="ConnectError"):
        await github_token_check(double)


@pytest.mark.usefixtures("trusted")
def test_one_context_per_ca_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shared = tls_context()
    other_ca, _ = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca))

    assert tls_context() is tls_context() is not shared
    assert tls_context().verify_mode == ssl.CERT_REQUIRED and tls_context().check_hostname
