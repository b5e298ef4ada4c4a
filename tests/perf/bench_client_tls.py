"""CPU per outgoing call of the GitHub, OpenID Connect and webhooks clients: a new client and one request each.

    uv run --extra test python -m tests.perf.bench_client_tls [--calls 50]

Each call is what the service does per GitHub token check or OIDC discovery (a new client, one GET), per GitHub
sign-in step (authlib's OAuth client, one POST) and per webhooks delivery loop (a new client, one POST). The GitHub
double answers on 127.0.0.1 from its own process, so the CPU counted (``time.process_time``) is the calling side's
only. A client given no TLS context makes its own, loading the CA store. To time a checkout without
``tls_context()``, run this file from it with its packages first on the path:

    cd OLD && PYTHONPATH=.:plugins/oidc:plugins/webhooks python tests/perf/bench_client_tls.py

Measured 2026-12-07 (2 cores, load 3-6, three interleaved runs): 30.8-38.1 ms per call with a context per client,
0.9-1.8 ms with the shared one, for each of the four.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx2

from upload_service.builtin.github.client import GitHubAPI, http_client as github_client
from upload_service.builtin.github.config import GitHubConfig
from upload_service.builtin.github.oauth import oauth_client
from upload_service_oidc.issuer import http_client as oidc_client

DOUBLE = """
import sys
from tests.github_double import GitHubDouble
double = GitHubDouble().start()
double.add_user("bench")
print(double.api_url, double.issue_token("bench"), flush=True)
sys.stdin.read()
"""


def webhooks_client() -> httpx2.AsyncClient:
    """The client the outbox makes per delivery loop."""
    try:
        from upload_service_webhooks.outbox import http_client
    except ImportError:  # before the one TLS context per process, the outbox made it inline
        return httpx2.AsyncClient(timeout=10.0, follow_redirects=False)
    return http_client(10.0)


async def cpu_per_call(calls: int, call: Callable[[], Awaitable[object]]) -> float:
    await call()  # imports and the first (lazy) context outside the count
    start = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - start) / calls * 1000


async def measure(api_url: str, token: str, calls: int) -> None:
    async def github() -> object:
        async with github_client() as http:
            return await GitHubAPI(api_url, token, http).user()

    github_url = api_url.removesuffix("/api/v3")
    config = GitHubConfig(client_id="id", client_secret="secret", url=github_url, api_url=api_url,
                          token_cache_ttl=60, allowed_users=frozenset(), allowed_orgs=frozenset())

    async def oauth() -> object:
        async with oauth_client(config, "http://127.0.0.1/login/authorized") as http:
            return await http.request("POST", config.token_url, content=b"{}", withhold_token=True)

    async def oidc() -> object:
        async with oidc_client() as http:
            return await http.get(f"{api_url}/user", headers={"Authorization": f"Bearer {token}"})

    async def webhooks() -> object:
        async with webhooks_client() as http:
            return await http.post(config.token_url, content=b"{}")

    clients = {"github token check": github, "github oauth client": oauth, "oidc discovery": oidc,
                  "webhooks loop": webhooks}
    for name, call in clients.items():
        print(f"{name:20} {await cpu_per_call(calls, call):6.2f} ms of CPU per call ({calls} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with subprocess.Popen([sys.executable, "-c", DOUBLE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as double:
        assert double.stdout is not None and double.stdin is not None
        api_url, token = double.stdout.readline().split()
        try:
            asyncio.run(measure(api_url, token, args.calls))
        finally:
            double.stdin.close()


if __name__ == "__main__":
    main()
