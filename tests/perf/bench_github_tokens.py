"""What a GitHub bearer token costs per API request, next to a static API token.

    uv run python -m tests.perf.bench_github_tokens [--seconds 5] [--concurrency 16]

Small raw PUTs (1 KiB) on keep-alive connections against a real server, with GitHub played by the test double
on 127.0.0.1 (so "GitHub calls" cost a local round trip, far less than real GitHub's ~100 ms). Prints requests
per second, latency percentiles and how many GitHub calls each run made.
"""

from __future__ import annotations

import argparse
import asyncio

from tests.github_double import GitHubDouble
from tests.perf.harness import machine, service, workdir
from tests.perf.load import put_load
from tests.servers import TOKENS


def run(double: GitHubDouble, token: str, seconds: float, concurrency: int, **settings: str) -> str:
    with service(workdir() / "server", **double.settings(), **settings) as server:
        port = int(server.url.rsplit(":", 1)[1])
        before = double.count("GET /api/v3/user")
        result = asyncio.run(put_load("127.0.0.1", port, "/api/files/small.bin", {"Authorization": f"Bearer {token}"},
                                      b"s" * 1024, concurrency, seconds))
        calls = double.count("GET /api/v3/user") - before
    return (f"{result['rps']:,.0f} req/s | {result['p50_ms']:.1f} ms | {result['p99_ms']:.1f} ms "
            f"| {calls} | {result['errors']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    double = GitHubDouble().start()
    double.add_user("bench")
    token = double.issue_token("bench")
    print(f"machine: {machine()}; {args.concurrency} connections, {args.seconds:.0f} s each, 1 KiB PUTs")
    print("| credentials | throughput | p50 | p99 | GitHub calls | errors |\n| --- | --- | --- | --- | --- | --- |")
    try:
        print("| static API_TOKENS token |", run(double, TOKENS["alice"], args.seconds, args.concurrency), flush=True)
        print("| GitHub token, cached (60 s) |", run(double, token, args.seconds, args.concurrency), flush=True)
        print("| GitHub token, no cache |", run(double, token, args.seconds, args.concurrency,
                                                 github_token_cache_ttl="0"), flush=True)
    finally:
        double.stop()


if __name__ == "__main__":
    main()
