"""Quotas, concurrent-upload slots and rate limits hold when requests alternate between two instances that share
Redis (LOCKER=redis, REDIS_URL) and the same storage (one bucket on S3, one folder on local disk)."""

from __future__ import annotations

import asyncio
import os

import pytest

from .conftest import staging_entries, stored_files
from .test_api_quotas import SlowUpload, parallel_uploads, receiving


def test_a_file_quota_holds_across_instances(twins):
    first, second = twins(user_quota_files="5")
    urls = [f"{(first, second)[n % 2].url}/api/files/p{n}.bin" for n in range(20)]
    statuses = asyncio.run(parallel_uploads(urls))
    assert sorted(statuses) == [201] * 5 + [413] * 15
    assert len(stored_files(first, "files/")) == 5 and staging_entries(first) == []
    listed = {file["id"] for file in second.client().get("/api/files").json()["files"]}
    assert len(listed) == 5
    deleted = first.client().delete(f"/api/files/{listed.pop()}")  # freed on one instance, usable on the other
    assert deleted.status_code == 204
    assert second.client().put("/api/files/again.bin", content=os.urandom(10)).status_code == 201
    assert second.client().put("/api/files/over.bin", content=os.urandom(10)).status_code == 413


def test_a_byte_quota_holds_across_instances(twins):
    first, second = twins(user_quota_bytes="10000")
    urls = [f"{(first, second)[n % 2].url}/api/files/p{n}.bin" for n in range(10)]
    statuses = asyncio.run(parallel_uploads(urls, size=4000))
    assert sorted(statuses) == [201] * 2 + [413] * 8
    refused = first.client().put("/api/files/x.bin", content=os.urandom(2001))
    assert refused.status_code == 413 and refused.json()["used"] == 8000


@pytest.mark.local_storage
def test_a_concurrent_upload_slot_taken_on_one_instance_counts_on_the_other(twins):
    first, second = twins(max_concurrent_uploads="1")
    slow = SlowUpload(first, "slow.bin")
    slow.start()
    assert receiving(first, 1)
    refused = second.client().put("/api/files/b.bin", content=b"x")
    assert refused.status_code == 429 and refused.json()["in_progress"] == 1
    slow.go.set()
    slow.join(10)
    assert slow.status == 201
    assert second.client().put("/api/files/b.bin", content=b"x").status_code == 201


@pytest.mark.local_storage
def test_rate_limits_are_counted_in_redis_across_instances(twins, clear_of_a_minute_edge):
    first, second = twins(rate_limit="4/minute", rate_limit_per_address="6/minute")
    alice = [first.client("alice"), second.client("alice")]
    assert [alice[n % 2].get("/api/files").status_code for n in range(4)] == [200] * 4
    assert first.client("alice").get("/api/files").status_code == 429
    assert second.client("alice").get("/api/files").status_code == 429
    assert second.client("bob").get("/api/files").status_code == 429  # the address's 6 are spent, on both
