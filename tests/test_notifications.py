"""Notification hooks (``upload_persisted``, ``file_deleted``) never delay the client's answer, and a clean
shutdown waits for the ones still running."""

from __future__ import annotations

import asyncio

from upload_service import hookimpl


class SlowNotifier:
    """A webhook-like plugin whose notifications take as long as the test says (``release``)."""

    name = "slow_notifier"

    def __init__(self) -> None:
        self.released = asyncio.Event()  # bound to the server's loop when first awaited there
        self.started: list[str] = []
        self.finished: list[str] = []

    async def release(self) -> None:
        """Let the notifications finish; run it on the server's loop (``running.run``), where they wait."""
        self.released.set()

    async def _wait(self, what: str) -> None:
        self.started.append(what)
        await self.released.wait()
        self.finished.append(what)

    @hookimpl
    async def upload_persisted(self, file, service) -> None:
        await self._wait(f"persisted {file.filename}")

    @hookimpl
    async def file_deleted(self, file, service) -> None:
        await self._wait(f"deleted {file.filename}")


def test_the_answer_does_not_wait_for_notifications(upload_service_factory) -> None:
    notifier = SlowNotifier()
    running = upload_service_factory(plugins=[notifier])
    client = running.client()
    stored = client.put("/api/files/a.txt", content=b"hello")
    assert stored.status_code == 201  # answered while the notification still runs
    deleted = client.delete(f"/api/files/{stored.json()['id']}")
    assert deleted.status_code == 204
    assert notifier.finished == []
    running.run(notifier.release())
    running.stop()  # stopping waits for the notifications still running
    assert sorted(notifier.finished) == ["deleted a.txt", "persisted a.txt"]


def test_a_failing_notification_is_logged_and_the_upload_kept(upload_service_factory, caplog) -> None:
    class Broken:
        name = "broken"

        @hookimpl
        def upload_persisted(self, file, service) -> None:
            raise RuntimeError("the webhook receiver is down")

    running = upload_service_factory(plugins=[Broken()])
    client = running.client()
    stored = client.put("/api/files/b.txt", content=b"kept")
    assert stored.status_code == 201
    assert client.get(f"/api/files/{stored.json()['id']}/content").content == b"kept"
    running.stop()
    assert any("upload_persisted failed" in record.getMessage() for record in caplog.records)
