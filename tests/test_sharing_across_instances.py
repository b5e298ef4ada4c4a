"""Download limits and file-request limits hold when visitors' requests alternate between two instances that
share the storage and Redis: records and counters live where every instance sees them."""

from __future__ import annotations

import asyncio

import httpx

JSON = {"Accept": "application/json"}


async def _all_at_once(urls: list[str], method: str = "GET", **options) -> list[int]:
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(*(client.request(method, url, **options) for url in urls))
    return [response.status_code for response in responses]


def test_concurrent_downloads_on_two_instances_never_pass_the_limit(twins):
    first, second = twins()
    alice = first.client("alice")
    file = alice.put("/api/files/popular.bin", content=bytes(200_000)).json()
    share = alice.post("/api/shares", json={"files": [file["id"]], "max_downloads": 5}).json()
    path = f"{share['url']}/files/{file['id']}"
    statuses = asyncio.run(_all_at_once([f"{(first, second)[n % 2].url}{path}" for n in range(30)]))
    assert sorted(statuses) == [200] * 5 + [410] * 25
    assert second.client("alice").get(f"/api/shares/{share['id']}").json()["downloads"] == 5


def test_concurrent_uploads_to_a_request_on_two_instances_never_pass_max_files(twins):
    first, second = twins()
    alice = first.client("alice")
    file_request = alice.post("/api/requests", json={"title": "Receipts", "max_files": 3}).json()
    urls = [f"{(first, second)[n % 2].url}{file_request['url']}/files/r{n}.txt" for n in range(12)]
    statuses = asyncio.run(_all_at_once(urls, "PUT", content=b"receipt"))
    assert sorted(statuses) == [201] * 3 + [409] * 9
    names = [item["filename"] for item in second.client("alice").get("/api/files").json()["files"]]
    assert len([name for name in names if name.startswith("r") and name.endswith(".txt")]) == 3


def test_links_and_their_counts_survive_a_restart(make_server):
    first = make_server()
    alice = first.client("alice")
    file = alice.put("/api/files/kept.txt", content=b"kept").json()
    share = alice.post("/api/shares", json={"files": [file["id"]], "max_downloads": 2, "password": "pw-1234"}).json()
    visitor = first.client(None)
    assert visitor.post(share["url"], json={"password": "wrong"}, headers=JSON).status_code == 403
    assert visitor.post(share["url"], json={"password": "pw-1234"}, headers=JSON).status_code == 204
    assert visitor.get(f"{share['url']}/files/{file['id']}").content == b"kept"
    first.stop()
    settings = first.bucket.settings() if first.bucket is not None else {"upload_dir": str(first.upload_dir)}
    again = make_server(**settings)  # the same SECRET_KEY, as a restart keeps it
    after = again.client(None, cookies=visitor.cookies)  # the unlock cookie still opens it
    assert after.get(f"{share['url']}/files/{file['id']}").content == b"kept"
    assert after.get(f"{share['url']}/files/{file['id']}").status_code == 410  # two downloads in all
    assert again.client("alice").get(f"/api/shares/{share['id']}").json()["downloads"] == 2
