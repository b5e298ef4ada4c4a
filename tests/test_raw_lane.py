"""The raw-upload lane answers an API client's ``PUT /api/files/<name>`` below Quart exactly as the route does,
and steps aside whenever something registered on the app could tell the difference."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from quart import Quart, request

from upload_service import ignores_raw_uploads
from upload_service.api.raw_lane import RawUploadLane
from upload_service.app import create_app
from upload_service.settings import Settings

TOKEN = "alice-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def make_app(folder: Path) -> Quart:
    return create_app(Settings(secret_key="k" * 32, upload_dir=str(folder), api_tokens=f"alice:{TOKEN}",
                               max_upload_size="1KiB"))


def lane_of(app: Quart) -> RawUploadLane:
    middleware = app.asgi_app
    while not isinstance(middleware, RawUploadLane):
        middleware = middleware.app  # type: ignore[attr-defined]
    return middleware


def requests_taken(app: Quart) -> list[tuple]:
    """The requests the app's lane answers from now on (the list fills as they come)."""
    lane, taken = lane_of(app), []
    original = lane._answer

    async def spy(*args):
        taken.append(args)
        await original(*args)

    lane._answer = spy  # type: ignore[method-assign]
    return taken


async def answers(app: Quart) -> list[tuple[int, dict[str, str], dict]]:
    """Status, headers (but the per-request ones) and body of one request of each kind the lane takes."""
    digest = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    requests = [
        ({**BEARER}, b"hello"),  # stored
        ({"Authorization": "Bearer wrong-token-0123456789"}, b"hello"),  # 401
        ({**BEARER, "Content-Digest": f"sha-256=:{digest}:"}, b"hello"),  # 400, nothing stored
        ({**BEARER}, b"x" * 2048),  # 413
        ({**BEARER, "Idempotency-Key": '"k-1"'}, b"keyed"),  # stored
        ({**BEARER, "Idempotency-Key": '"k-1"'}, b"keyed"),  # the first answer, replayed
        ({**BEARER, "Idempotency-Key": '"k-1"'}, b"other"),  # 422: the key of another request
        ({**BEARER, "Idempotency-Key": '""'}, b"keyed"),  # 400: not a key
    ]
    seen = []
    async with app.test_app() as running:
        client = running.test_client()
        for headers, body in requests:
            response = await client.put("/api/files/a%20b.txt", headers={**headers, "X-Request-Id": "req-1"},
                                        data=body)
            document = json.loads(await response.get_data())
            for varying in ("id", "created_at", "url", "sha256", "instance"):
                document.pop(varying, None)
            kept = {name.lower(): value for name, value in response.headers.items()
                    if name.lower() not in ("location", "date")}
            seen.append((response.status_code, kept, document))
    return seen


async def test_the_lane_answers_as_the_route_does(tmp_path):
    fast = make_app(tmp_path / "fast")
    routed = make_app(tmp_path / "routed")
    calls = []

    @routed.before_request
    async def count() -> None:  # unmarked: the lane must step aside, so this runs for every request
        calls.append(request.path)

    through_lane = await answers(fast)
    through_quart = await answers(routed)
    assert lane_of(fast).open() and not lane_of(routed).open()
    assert calls == ["/api/files/a b.txt"] * 8
    assert [status for status, _, _ in through_lane] == [201, 401, 400, 413, 201, 201, 422, 400]
    assert through_lane == through_quart
    assert through_lane[0][1]["x-request-id"] == "req-1"
    assert through_lane[0][1]["content-security-policy"].startswith("default-src 'none'")
    assert through_lane[0][2]["filename"] == "a b.txt" and through_lane[0][2]["size"] == 5


async def test_a_marked_request_function_keeps_the_lane_and_is_skipped(tmp_path):
    app = make_app(tmp_path)
    calls = []

    @app.after_request
    @ignores_raw_uploads
    async def static_only(response):
        calls.append(request.path)
        return response

    async with app.test_app() as running:
        client = running.test_client()
        assert (await client.put("/api/files/n.txt", headers=BEARER, data=b"1")).status_code == 201
        assert (await client.get("/api/files", headers=BEARER)).status_code == 200
    assert lane_of(app).open()
    assert calls == ["/api/files"]  # the upload went by the lane; everything else through Quart


@pytest.mark.parametrize("headers", [
    {**BEARER, "Cookie": "upload_service_session=x"},
    {"Authorization": "Basic YTpi"},
])
async def test_requests_the_lane_leaves_to_quart(tmp_path, headers):
    app = make_app(tmp_path)
    taken = requests_taken(app)
    async with app.test_app() as running:
        await running.test_client().put("/api/files/n.txt", headers=headers, data=b"1")
        await running.test_client().put("/api/files/n.txt", headers=BEARER, data=b"1")
    assert len(taken) == 1  # only the plain bearer-token upload


async def test_keyed_uploads_take_the_lane_and_are_done_once(tmp_path):
    """Behind the shipped nginx config every PUT carries a key (nginx's request id): the lane still takes them."""
    app = make_app(tmp_path)
    taken = requests_taken(app)
    keyed = {**BEARER, "Idempotency-Key": '"nginx-request-id-1"'}
    async with app.test_app() as running:
        client = running.test_client()
        first = await client.put("/api/files/k.txt", headers=keyed, data=b"once")
        again = await client.put("/api/files/k.txt", headers=keyed, data=b"once")
        listed = await (await client.get("/api/files", headers=BEARER)).get_json()
    assert len(taken) == 2
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert await first.get_json() == await again.get_json()
    assert [file["filename"] for file in listed["files"]] == ["k.txt"]
