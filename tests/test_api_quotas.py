"""Per-identity quotas (USER_QUOTA_BYTES, USER_QUOTA_FILES) and MAX_CONCURRENT_UPLOADS, on every upload path.

Each refusal is checked for its status and problem detail and for leaving nothing stored; races are real
parallel requests against a real server (local disk and S3).
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time

import httpx
import pytest

from .conftest import staging_entries, stored_files
from .servers import TOKENS
from .tus import OCTETS, TUS, create, metadata, no_uploads_left, patch


def persistent(server) -> list:
    return stored_files(server, "files/")


def temporary(server) -> list:
    return stored_files(server, "temp/")


def assert_quota_problem(response: httpx.Response, quota: str, used: int, limit: int) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["quota"], problem["used"], problem["limit"]) == (quota, used, limit)
    assert f"{used} of your {limit}" in problem["detail"]


def test_byte_quota_refuses_a_declared_size_before_storing(make_server):
    server = make_server(user_quota_bytes="1000")
    client = server.client()
    assert client.put("/api/files/a.bin", content=os.urandom(600)).status_code == 201
    refused = client.put("/api/files/b.bin", content=os.urandom(600))
    assert_quota_problem(refused, "bytes", 600, 1000)
    assert "needs 600 more" in refused.json()["detail"]
    assert len(persistent(server)) == 1 and staging_entries(server) == []
    assert client.put("/api/files/c.bin", content=os.urandom(400)).status_code == 201  # exactly up to the limit


def test_byte_quota_stops_a_body_of_unknown_size_while_it_streams(make_server):
    server = make_server(user_quota_bytes="100KiB")

    def body():
        for _ in range(40):  # 40 x 8 KiB: over the quota, with no Content-Length
            yield os.urandom(8192)

    refused = server.client().put("/api/files/stream.bin", content=body())
    assert refused.status_code == 413 and refused.json()["quota"] == "bytes"
    multipart = server.client().post("/api/upload", files={"file": ("m.bin", os.urandom(150_000))})
    assert multipart.status_code == 413 and multipart.json()["quota"] == "bytes"
    assert persistent(server) == [] and staging_entries(server) == []
    fits = server.client().post("/api/upload", files={"file": ("m.bin", os.urandom(90_000))})
    assert fits.status_code == 201  # the refused uploads gave back what they held


def test_json_batch_over_the_file_quota_stores_nothing(make_server):
    server = make_server(user_quota_files="2")
    items = [{"filename": f"{n}.txt", "content": base64.b64encode(b"x").decode()} for n in range(3)]
    refused = server.client().post("/api/upload", json=items)
    assert_quota_problem(refused, "files", 2, 2)
    assert persistent(server) == [] and staging_entries(server) == []
    assert server.client().post("/api/upload", json=items[:2]).status_code == 201


def test_temporary_uploads_count_and_deletes_free_quota(make_server):
    server = make_server(user_quota_files="2")
    client = server.client()
    kept = client.put("/api/files/a.txt", content=b"a").json()
    assert client.put("/api/files/t.txt", params={"temporary": "1"}, content=b"t").status_code == 201
    assert_quota_problem(client.put("/api/files/c.txt", content=b"c"), "files", 2, 2)
    assert client.delete(f"/api/files/{kept['id']}").status_code == 204
    assert client.put("/api/files/c.txt", content=b"c").status_code == 201
    assert len(persistent(server)) == 1 and len(temporary(server)) == 1


def test_quotas_are_per_identity(make_server):
    server = make_server(user_quota_files="1")
    assert server.client("alice").put("/api/files/a.txt", content=b"a").status_code == 201
    assert server.client("bob").put("/api/files/b.txt", content=b"b").status_code == 201
    assert server.client("alice").put("/api/files/c.txt", content=b"c").status_code == 413


async def parallel_uploads(urls: list[str], user: str = "alice", size: int = 2000) -> list[int]:
    """One raw PUT per URL, all at once, each on its own connection; their statuses."""
    headers = {"Authorization": f"Bearer {TOKENS[user]}"}
    async with httpx.AsyncClient(headers=headers, timeout=120,
                                 limits=httpx.Limits(max_connections=len(urls))) as client:
        answers = await asyncio.gather(*(client.put(url, content=os.urandom(size)) for url in urls))
    return [answer.status_code for answer in answers]


def test_twenty_parallel_uploads_against_a_quota_of_five_files(make_server):
    server = make_server(user_quota_files="5")
    statuses = asyncio.run(parallel_uploads([f"{server.url}/api/files/p{n}.bin" for n in range(20)]))
    assert sorted(statuses) == [201] * 5 + [413] * 15
    assert len(persistent(server)) == 5 and staging_entries(server) == []


@pytest.mark.local_storage
@pytest.mark.process
def test_the_quota_holds_across_the_workers_of_one_instance(make_server):
    """WORKERS=2 without Redis: the file locker serialises the ledger for every worker on the machine."""
    server = make_server(workers="2", user_quota_files="5")
    statuses = asyncio.run(parallel_uploads([f"{server.url}/api/files/w{n}.bin" for n in range(20)]))
    assert sorted(statuses) == [201] * 5 + [413] * 15
    assert len(persistent(server)) == 5


def test_parallel_uploads_do_not_overshoot_a_byte_quota(make_server):
    server = make_server(user_quota_bytes="10000")
    statuses = asyncio.run(parallel_uploads([f"{server.url}/api/files/p{n}.bin" for n in range(12)], size=3000))
    assert sorted(statuses) == [201] * 3 + [413] * 9
    listed = server.client().get("/api/files").json()["files"]
    assert sum(file["size"] for file in listed) == 9000


def test_tus_upload_length_over_the_quota_is_refused_at_creation(make_server):
    server = make_server(user_quota_bytes="1000")
    client = server.client()
    refused = client.post("/api/tus/", headers={**TUS, "Upload-Length": "1001",
                                                "Upload-Metadata": metadata(filename="big.bin")})
    assert_quota_problem(refused, "bytes", 0, 1000)
    assert no_uploads_left(server)
    url = create(client, 600, Upload_Metadata=metadata(filename="held.bin"))
    held = client.post("/api/tus/", headers={**TUS, "Upload-Length": "600"})
    assert_quota_problem(held, "bytes", 600, 1000)  # the unfinished upload holds its length
    data = os.urandom(600)
    done = patch(client, url, 0, data)
    assert done.status_code == 204 and done.headers["Upload-File-Id"]
    assert client.get(f"/api/files/{done.headers['Upload-File-Id']}/content").content == data
    assert_quota_problem(client.put("/api/files/x.bin", content=os.urandom(401)), "bytes", 600, 1000)


def test_tus_terminated_upload_gives_its_quota_back(make_server):
    server = make_server(user_quota_files="1")
    client = server.client()
    url = create(client, 10)
    assert client.post("/api/tus/", headers={**TUS, "Upload-Length": "10"}).status_code == 413
    assert client.delete(url, headers=TUS).status_code == 204
    assert client.put("/api/files/a.txt", content=b"now it fits").status_code == 201


def test_tus_deferred_length_over_the_quota_is_dropped_whole(make_server):
    server = make_server(user_quota_bytes="64KiB")
    client = server.client()
    url = create(client, None)
    assert patch(client, url, 0, os.urandom(40_000)).status_code == 204
    refused = patch(client, url, 40_000, os.urandom(40_000))
    assert refused.status_code == 413 and refused.json()["quota"] == "bytes"
    assert no_uploads_left(server) and persistent(server) == []
    assert client.put("/api/files/fits.bin", content=os.urandom(60_000)).status_code == 201


class SlowUpload(threading.Thread):
    """A raw PUT that sends one chunk, then waits until told to finish or to drop the connection."""

    def __init__(self, server, name: str) -> None:
        super().__init__(daemon=True)
        self.server, self.name_ = server, name
        self.started, self.go, self.abort = threading.Event(), threading.Event(), False
        self.status: int | None = None

    def body(self):
        yield b"first chunk "
        self.started.set()
        self.go.wait(30)
        if self.abort:
            raise RuntimeError("the client gives up mid-body")
        yield b"and the rest"

    def run(self) -> None:
        try:
            self.status = self.server.client().put(f"/api/files/{self.name_}", content=self.body()).status_code
        except (httpx.HTTPError, RuntimeError):
            self.status = None


def receiving(server, count: int, path: str = "raw") -> bool:
    """Wait until the server reports ``count`` uploads being received on ``path`` (they hold their slots)."""
    line = f'upload_service_active_uploads{{path="{path}"}} {float(count)}'
    return wait_for(lambda: line in server.client(None).get("/metrics").text)


def wait_for(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_concurrent_uploads_per_identity_are_limited_and_slots_come_back(make_server):
    server = make_server(max_concurrent_uploads="2")
    slow = [SlowUpload(server, f"slow{n}.bin") for n in range(2)]
    for upload in slow:
        upload.start()
    assert receiving(server, 2)
    refused = server.client().put("/api/files/third.bin", content=b"x")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.json()["limit"] == 2 and "2 uploads in progress" in refused.json()["detail"]
    assert server.client("bob").put("/api/files/bob.bin", content=b"x").status_code == 201
    tus = server.client().post("/api/tus/", headers={**OCTETS, "Upload-Length": "1"}, content=b"x")
    assert tus.status_code == 429  # a tus request carrying bytes needs a slot too
    slow[0].go.set()  # one finishes...
    slow[0].join(10)
    assert slow[0].status == 201
    assert server.client().put("/api/files/fourth.bin", content=b"x").status_code == 201
    slow[1].abort = True  # ...the other hangs up mid-body: its slot comes back too
    slow[1].go.set()
    slow[1].join(10)
    blocker = SlowUpload(server, "blocker.bin")
    blocker.start()
    assert receiving(server, 1)  # the blocker streams, the dropped upload no longer does
    assert wait_for(lambda: server.client().put("/api/files/fifth.bin", content=b"x").status_code == 201)
    blocker.go.set()
    blocker.join(10)


@pytest.mark.local_storage
def test_an_idle_upload_that_times_out_gives_its_slot_back(make_server):
    server = make_server(max_concurrent_uploads="1", upload_idle_timeout="1")
    stalled = SlowUpload(server, "stalled.bin")
    stalled.start()
    assert receiving(server, 1)
    assert server.client().put("/api/files/b.bin", content=b"x").status_code == 429
    assert wait_for(lambda: server.client().put("/api/files/c.bin", content=b"x").status_code == 201)
    stalled.go.set()
    stalled.join(10)
