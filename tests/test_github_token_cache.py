"""The token cache on its own: one check per token per TTL, shared by concurrent callers, never the token kept."""

from __future__ import annotations

import asyncio

import pytest

from upload_service.builtin.github.token_cache import TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_answer_is_reused_until_the_ttl_passes():
    clock, checks = Clock(), []
    cache: TokenCache[str] = TokenCache(60, clock=clock)

    async def check() -> str:
        checks.append(1)
        return f"verdict {len(checks)}"

    first = await cache.get("ghp_token", check)
    clock.now += 59
    second = await cache.get("ghp_token", check)
    clock.now += 2
    third = await cache.get("ghp_token", check)

    assert (first, second, third) == ("verdict 1", "verdict 1", "verdict 2")


async def test_concurrent_callers_share_one_check():
    cache: TokenCache[str] = TokenCache(60)
    started, answer = asyncio.Event(), asyncio.Event()
    calls = 0

    async def slow_check() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await answer.wait()  # GitHub answers only once every caller has asked
        return "ok"

    results = asyncio.gather(*(cache.get("ghp_token", slow_check) for _ in range(20)))
    await started.wait()
    answer.set()

    assert await results == ["ok"] * 20 and calls == 1


async def test_failures_are_not_cached_and_reach_every_waiter():
    cache: TokenCache[str] = TokenCache(60)
    outcomes = iter([RuntimeError("GitHub down"), "ok"])
    started, answer = asyncio.Event(), asyncio.Event()

    async def check() -> str:
        started.set()
        await answer.wait()  # both callers wait for the one check
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    both = asyncio.gather(cache.get("t", check), cache.get("t", check), return_exceptions=True)
    await started.wait()
    answer.set()
    failed = await both

    assert [str(error) for error in failed] == ["GitHub down", "GitHub down"]
    assert await cache.get("t", check) == "ok"


async def test_a_cancelled_caller_does_not_cancel_the_check_for_others():
    cache: TokenCache[str] = TokenCache(60)
    started, answer = asyncio.Event(), asyncio.Event()

    async def check() -> str:
        started.set()
        await answer.wait()
        return "ok"

    impatient = asyncio.ensure_future(cache.get("t", check))
    patient = asyncio.ensure_future(cache.get("t", check))
    await started.wait()  # both callers wait on the check
    impatient.cancel()  # while the check is still waiting for GitHub
    answer.set()

    assert await patient == "ok"
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_only_a_hash_of_the_token_is_kept_and_size_is_bounded():
    cache: TokenCache[str] = TokenCache(60, max_entries=3)
    tokens = [f"ghp_secret_{n}" for n in range(5)]

    async def check() -> str:
        return "verdict"

    for token in tokens:
        await cache.get(token, check)

    kept = repr(vars(cache))
    assert not any(token in kept for token in tokens)
    assert len(cache) == 3  # the two oldest answers were dropped
