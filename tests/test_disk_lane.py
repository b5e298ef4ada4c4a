"""The ordered job lane behind local-storage writes: order, no overlap, nothing after a failure, clean waits."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from upload_service.builtin.local_storage.disk_lane import DiskLane


@pytest.fixture
def pool():
    executor = ThreadPoolExecutor(max_workers=8)
    yield executor
    executor.shutdown(wait=True)


async def test_jobs_run_in_order_one_at_a_time(pool):
    lane = DiskLane(pool)
    done: list[int] = []
    running = threading.Semaphore(1)
    overlaps: list[int] = []

    def job(number: int) -> int:
        if not running.acquire(blocking=False):
            overlaps.append(number)
            running.acquire()
        time.sleep(0.001 if number % 7 == 0 else 0)
        done.append(number)
        running.release()
        return number * 2

    futures = [lane.submit(job, number) for number in range(200)]
    results = await asyncio.gather(*futures)
    assert results == [number * 2 for number in range(200)]
    assert done == list(range(200))
    assert overlaps == []


async def test_a_failed_job_stops_every_later_one(pool):
    lane = DiskLane(pool)
    ran: list[str] = []

    def ok(name: str) -> None:
        ran.append(name)

    def broken() -> None:
        ran.append("broken")
        raise OSError(28, "No space left on device")

    first = lane.submit(ok, "first")
    failing = lane.submit(broken)
    later = [lane.submit(ok, f"later-{n}") for n in range(3)]
    await first
    with pytest.raises(OSError, match="No space"):
        await failing
    for future in later:
        with pytest.raises(OSError, match="No space"):
            await future
    await lane.idle()  # still usable for waiting, even after the failure
    assert ran == ["first", "broken"]


async def test_idle_waits_for_a_job_whose_caller_was_cancelled(pool):
    lane = DiskLane(pool)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.set()

    future = lane.submit(slow)
    waiter = asyncio.ensure_future(future)
    assert await asyncio.to_thread(started.wait, 5)
    waiter.cancel()  # the request gave up; the thread still runs the job
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not finished.is_set()
    idle = asyncio.ensure_future(lane.idle())
    await asyncio.sleep(0.05)  # the behaviour: idle() is still waiting a moment later
    assert not idle.done(), "idle() must wait for the job still running in its thread"
    release.set()
    await asyncio.wait_for(idle, 5)
    assert finished.is_set()
