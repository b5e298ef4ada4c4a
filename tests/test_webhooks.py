"""plugins/webhooks (upload-service-webhooks) in a real server, delivering to real receivers on 127.0.0.1 that
verify every signature with the `standardwebhooks` package: every event, filters, back-off, dead letters and
their replay from the CLI, a restart, a receiver that hangs while uploads go on, and a backlog that new events
do not pay for."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from upload_service import Settings, StartupError, UploadService, create_app
from upload_service.testing import RunningService, start_service
from upload_service_webhooks.cli import main

from .faults import wait_for
from .webhook_receiver import Receiver, closed_port

SECRET = "whsec_" + base64.b64encode(b"webhook-test-secret-0123456789ab").decode()
FAST = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_BACKOFF": "0.05s", "WEBHOOK_BACKOFF_MAX": "0.4s",
        "WEBHOOK_TIMEOUT": "3s", "WEBHOOK_POLL_INTERVAL": "0.2s"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(SECRET)
    yield running
    running.stop()


def webhooks(urls: str = "", **settings: str) -> dict[str, Any]:
    return {"plugin_settings": {**FAST, "WEBHOOK_URLS": urls, **settings}}


def upload(running: RunningService, name: str = "a.txt", data: bytes = b"hello") -> dict[str, Any]:
    answer = running.client().put(f"/api/files/{name}", content=data)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def objects(running: RunningService, prefix: str) -> list[Any]:
    return running.run(running.service.storage.list(prefix))  # type: ignore[no-any-return]


def metric(running: RunningService, outcome: str) -> float:
    text = running.client().get("/metrics").text
    found = re.search(rf'^upload_service_webhook_deliveries_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} (\S+)$',
                      text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_every_event_arrives_signed(upload_service_factory, receiver: Receiver) -> None:
    running = upload_service_factory(temp_upload_ttl="0.3s", **webhooks(receiver.url))
    owner, visitor = running.client(), running.client(token=None)
    kept = upload(running, "kept.txt")
    gone = upload(running, "gone.txt")
    assert owner.delete(f"/api/files/{gone['id']}").status_code in (200, 204)
    temp = owner.put("/api/upload_temporary", json=[{"filename": "draft.txt", "content": "ZHJhZnQ="}]).json()
    share = owner.post("/api/shares", json={"files": [kept["id"]]}).json()
    assert visitor.get(f"{share['url']}/files/{kept['id']}").content == b"hello"
    file_request = owner.post("/api/requests", json={"title": "Inbox"}).json()
    assert visitor.put(f"{file_request['url']}/files/in.txt", content=b"in").status_code == 201
    expires = datetime.fromisoformat(temp["files"][0]["expires_at"])
    assert wait_for(lambda: datetime.now(UTC) > expires)
    assert running.run(running.service.sweep()) >= 1
    assert wait_for(lambda: {"file.expired", "request.received"} <= set(receiver.types()))
    assert not receiver.refused
    assert {d["id"] for d in receiver.of_type("file.persisted")} >= {kept["id"], gone["id"]}
    assert [d["id"] for d in receiver.of_type("file.deleted")] == [gone["id"]]
    assert [d["id"] for d in receiver.of_type("file.expired")] == [temp["files"][0]["id"]]
    (downloaded,) = receiver.of_type("share.downloaded")
    assert downloaded["share"]["id"] == share["id"] and [f["id"] for f in downloaded["files"]] == [kept["id"]]
    (received,) = receiver.of_type("request.received")
    assert received["request"]["id"] == file_request["id"] and received["file"]["filename"] == "in.txt"
    first = receiver.deliveries[0]
    assert first.headers["webhook-id"].startswith("msg_")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", first.payload["timestamp"])
    assert wait_for(lambda: not objects(running, "webhooks/"))  # the outbox empties
    assert metric(running, "delivered") == len(receiver.deliveries)


def test_each_endpoint_gets_the_events_it_asked_for(upload_service_factory, receiver: Receiver) -> None:
    deletions = Receiver(SECRET)
    try:
        endpoints = f'[{{"url": "{deletions.url}", "events": ["file.deleted"]}}]'
        running = upload_service_factory(**webhooks(receiver.url, WEBHOOK_ENDPOINTS=endpoints))
        file = upload(running)
        assert running.client().delete(f"/api/files/{file['id']}").status_code in (200, 204)
        assert wait_for(lambda: len(receiver.deliveries) == 2 and len(deletions.deliveries) == 1)
        assert deletions.types() == ["file.deleted"]
        assert sorted(receiver.types()) == ["file.deleted", "file.persisted"]
        (deleted,) = [d for d in receiver.deliveries if d.payload["type"] == "file.deleted"]  # either may come first
        assert deleted.headers["webhook-id"] in {d.headers["webhook-id"] for d in deletions.deliveries}
    finally:
        deletions.stop()


def test_a_failing_receiver_is_retried_with_growing_delays(upload_service_factory) -> None:
    flaky = Receiver(SECRET, fail_first=4)
    try:
        running = upload_service_factory(**webhooks(flaky.url, WEBHOOK_BACKOFF="0.1s", WEBHOOK_BACKOFF_MAX="1s"))
        upload(running)
        assert wait_for(lambda: len(flaky.deliveries) == 1)
        gaps = [later - earlier for earlier, later in zip(flaky.attempts, flaky.attempts[1:], strict=False)]
        assert len(flaky.attempts) == 5
        for number, gap in enumerate(gaps):  # 0.1, 0.2, 0.4, 0.8 s
            assert gap >= 0.1 * 2**number * 0.9, gaps
        lag = flaky.deliveries[0].at - flaky.attempts[0]
        assert lag < 1.5 + 3.0, lag  # the sum of the delays, plus the slack of a busy machine
        assert metric(running, "failed") == 4 and metric(running, "delivered") == 1
    finally:
        flaky.stop()


def write_backlog(running: RunningService, count: int, url: str, due: float, event_type: str) -> None:
    """``count`` outbox entries for ``url``, due at ``due``, older than any event the service writes next."""
    outbox, old = running.service.state("webhooks")["outbox"], time.time_ns() - 10**9
    state = {"id": "msg_old", "type": event_type, "created": time.time(), "claimed_until": 0,
             "endpoints": {url: {"attempts": 1, "next": due, "error": "ConnectError", "dead": False}}}

    async def write() -> None:
        await asyncio.gather(*(outbox._write(f"webhooks/outbox/{old:x}{n:012x}", b'{"data": {}}',
                                             {**state, "id": f"msg_{n}"}) for n in range(count)))

    running.run(write())


def outbox_listings(running: RunningService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prefix of each listing of the service's storage from now on."""
    listings: list[str] = []
    storage = running.service.storage
    listing = storage.list

    async def counted(prefix: str, **options: Any) -> Any:
        listings.append(prefix)
        return await listing(prefix, **options)

    monkeypatch.setattr(storage, "list", counted)
    return listings


def test_a_backlog_is_not_listed_for_each_new_event(upload_service_factory, receiver: Receiver,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21: with hundreds of entries for an endpoint that is down (none due for an hour), events for a
    working endpoint are delivered without a listing of the outbox each: the loop listed the whole outbox on
    every event and every finished delivery, a cost growing with the backlog, paid by the uploads."""
    down = f"http://127.0.0.1:{closed_port()}/hook"
    deletions_only = f'[{{"url": "{down}", "events": ["file.deleted"]}}]'
    running = upload_service_factory(**webhooks(receiver.url, WEBHOOK_POLL_INTERVAL="1s",
                                                 WEBHOOK_ENDPOINTS=deletions_only))
    write_backlog(running, 300, down, time.time() + 3600, "file.deleted")
    listings = outbox_listings(running, monkeypatch)
    started = time.monotonic()
    uploaded = {upload(running, f"{n}.txt")["id"] for n in range(30)}
    assert wait_for(lambda: {d["id"] for d in receiver.of_type("file.persisted")} == uploaded)
    took, passes = time.monotonic() - started, listings.count("webhooks/outbox/")
    assert passes <= 2 + 2 * took, (passes, took)  # a pass from the start a second (one page of 500), not 30+
    assert len(receiver.attempts) == 30 and not receiver.refused
    assert len(objects(running, "webhooks/outbox/")) == 300  # the backlog waits for its hour


def test_a_due_backlog_is_sent_once_each_a_page_per_refill(upload_service_factory, receiver: Receiver,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """More entries due than may be under way (64): the pass stops when full and goes on from where it stopped
    once half of them has been sent, rather than listing the outbox again for each delivery that ends."""
    running = upload_service_factory(**webhooks(receiver.url, WEBHOOK_POLL_INTERVAL="0.5s"))
    listings = outbox_listings(running, monkeypatch)
    started = time.monotonic()
    write_backlog(running, 150, receiver.url, time.time(), "file.persisted")  # the next poll finds them
    assert wait_for(lambda: len(receiver.deliveries) >= 150)
    took, passes = time.monotonic() - started, listings.count("webhooks/outbox/")
    ids = [delivery.headers["webhook-id"] for delivery in receiver.deliveries]
    assert sorted(ids) == sorted(f"msg_{n}" for n in range(150)) and not receiver.refused
    assert passes <= 150 // 32 + 3 + 2 * took / 0.5, (passes, took)  # the refills and the polls: 9, not 35
    assert wait_for(lambda: not objects(running, "webhooks/outbox/"))


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], upload_dir: Path, url: str,
        *args: str, **settings: str) -> tuple[int, str, str]:
    """``upload-service-webhooks`` (its ``main``, in this process to spare the imports of a new one), reading
    the environment as it does, on the same storage as the running service."""
    with monkeypatch.context() as patch:
        patch.chdir(upload_dir)
        for name, value in {"UPLOAD_DIR": str(upload_dir), "SECRET_KEY": "plugin-test-secret-0123456789", **FAST,
                            "WEBHOOK_URLS": url, **settings}.items():
            patch.setenv(name, value)
        code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_receiver_down_too_long_gets_a_dead_letter_which_the_cli_replays(tmp_path: Path, monkeypatch, capsys) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/hook"
    running = start_service(tmp_path, **webhooks(url, WEBHOOK_RETRY_FOR="0.5s"))
    try:
        file = upload(running)
        assert wait_for(lambda: objects(running, "webhooks/dead/"))
        assert not objects(running, "webhooks/outbox/")
        assert metric(running, "dead_lettered") == 1 and metric(running, "failed") >= 2
        code, out, err = cli(monkeypatch, capsys, tmp_path, url, "dead")
        assert code == 0, err
        assert '"type": "file.persisted"' in out and "ConnectError" in out
        back = Receiver(SECRET, port=port)
        try:
            code, out, err = cli(monkeypatch, capsys, tmp_path, url, "replay", "--all")
            assert code == 0, out + err
            assert '"delivered"' in out
            assert [d["id"] for d in back.of_type("file.persisted")] == [file["id"]]
            assert not objects(running, "webhooks/")
        finally:
            back.stop()
    finally:
        running.stop()


def test_events_kept_at_a_stop_are_delivered_after_the_restart(tmp_path: Path) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/hook"
    running = start_service(tmp_path, **webhooks(url))
    try:
        uploaded = [upload(running, f"{n}.txt")["id"] for n in range(3)]
    finally:
        running.stop()  # waits for the notifications: the events are in the outbox
    receiver = Receiver(SECRET, port=port)
    again = start_service(tmp_path, **webhooks(url))
    try:
        assert wait_for(lambda: len(receiver.deliveries) >= 3)
        assert {d["id"] for d in receiver.of_type("file.persisted")} == set(uploaded)
        assert wait_for(lambda: not objects(again, "webhooks/"))
    finally:
        again.stop()
        receiver.stop()


def test_uploads_are_answered_while_the_receiver_hangs(upload_service_factory, receiver: Receiver) -> None:
    receiver.release.clear()
    running = upload_service_factory(**webhooks(receiver.url, WEBHOOK_TIMEOUT="5s"))
    upload(running, "first.txt")
    assert receiver.hanging.wait(5)
    started = time.monotonic()
    second = upload(running, "second.txt")
    assert time.monotonic() - started < 2.5  # well under the 5 s the delivery may still hang
    assert not receiver.deliveries  # the receiver still holds the first one
    receiver.release.set()
    assert wait_for(lambda: second["id"] in {d["id"] for d in receiver.of_type("file.persisted")})


def test_inert_without_endpoints(upload_service_factory) -> None:
    running = upload_service_factory()
    upload(running)
    running.run(running.service.notified())
    assert running.service.state("webhooks")["outbox"] is None and not objects(running, "webhooks/")


@pytest.mark.parametrize(("settings", "message"), [
    ({"WEBHOOK_SECRET": "not-a-secret"}, "WEBHOOK_SECRET must be 'whsec_' followed by base64"),
    ({"WEBHOOK_SECRET": "whsec_c2hvcnQ="}, "WEBHOOK_SECRET is too short"),
    ({"WEBHOOK_URLS": "ftp://example.com/hook"}, "is not an http:// or https:// URL"),
    ({"WEBHOOK_ENDPOINTS": '[{"url": "http://127.0.0.1:9/", "events": ["file.eaten"]}]'}, "events must be a list"),
    ({"WEBHOOK_ENDPOINTS": "[{"}, "WEBHOOK_ENDPOINTS is not JSON"),
])
def test_misconfigured_it_refuses_to_start(tmp_path: Path, settings: dict[str, str], message: str) -> None:
    app = create_app(Settings(secret_key="plugin-test-secret-0123456789", upload_dir=tmp_path, plugin_settings={
        "WEBHOOK_SECRET": SECRET, "WEBHOOK_URLS": "http://127.0.0.1:9/hook", **settings}))
    service = next(ext for ext in app.extensions.values() if isinstance(ext, UploadService))
    with pytest.raises(StartupError, match=re.escape(message)):
        asyncio.run(service.preflight())


def test_instances_sharing_storage_deliver_each_event_once(tmp_path: Path) -> None:
    flaky = Receiver(SECRET, fail_first=15)  # the first attempts fail: both instances then retry the same entries
    first = start_service(tmp_path, **webhooks(flaky.url))
    second = start_service(tmp_path, **webhooks(flaky.url))
    try:
        uploaded = [upload(running, f"{n}.txt")["id"] for n in range(10) for running in (first, second)]
        assert wait_for(lambda: len(flaky.deliveries) >= len(uploaded))
        assert wait_for(lambda: not objects(first, "webhooks/"))
        ids = [delivery.headers["webhook-id"] for delivery in flaky.deliveries]
        assert sorted(d["id"] for d in flaky.of_type("file.persisted")) == sorted(uploaded)
        assert len(ids) == len(set(ids)), "an entry is claimed by one instance at a time"
        assert metric(first, "delivered") > 0 and metric(second, "delivered") > 0  # both took part
    finally:
        first.stop()
        second.stop()
        flaky.stop()


def test_a_delivery_cut_by_a_stop_is_sent_at_once_after_the_restart(tmp_path: Path, receiver: Receiver) -> None:
    receiver.release.clear()
    running = start_service(tmp_path, **webhooks(receiver.url, WEBHOOK_TIMEOUT="5s"))
    try:
        file = upload(running)
        assert receiver.hanging.wait(5)
    finally:
        running.stop()  # cancels the hanging delivery, which gives its claim back
    receiver.release.set()
    again = start_service(tmp_path, **webhooks(receiver.url, WEBHOOK_TIMEOUT="5s"))
    try:
        restarted = time.monotonic()
        assert wait_for(lambda: receiver.of_type("file.persisted"), timeout=20)
        assert time.monotonic() - restarted < 4, "not held back by the stopped instance's claim (10 s)"
        assert [d["id"] for d in receiver.of_type("file.persisted")] == [file["id"]]
    finally:
        again.stop()
