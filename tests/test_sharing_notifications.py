"""The sharing plugin tells other plugins (webhooks, audit logs) about share downloads and request uploads, and
counts both on /metrics."""

from __future__ import annotations

import logging
import re

from upload_service import hookimpl


class Recorder:
    """Records what the sharing plugin notifies."""

    name = "sharing_recorder"

    def __init__(self) -> None:
        self.events: list[tuple[str, dict, list[str]]] = []

    @hookimpl
    def share_downloaded(self, share, files, service) -> None:
        self.events.append(("downloaded", share, [file.filename for file in files]))

    @hookimpl
    def file_request_received(self, file_request, file, service) -> None:
        self.events.append(("received", file_request, [file.filename]))


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_downloads_and_request_uploads_are_notified_and_counted(upload_service_factory) -> None:
    recorder = Recorder()
    running = upload_service_factory(plugins=[recorder])
    owner, visitor = running.client(), running.client(token=None)
    file = owner.put("/api/files/notes.txt", content=b"notes").json()
    share = owner.post("/api/shares", json={"files": [file["id"]], "max_downloads": 3}).json()
    file_request = owner.post("/api/requests", json={"title": "Inbox"}).json()
    assert visitor.get(f"{share['url']}/files/{file['id']}").content == b"notes"
    assert visitor.get(f"{share['url']}/zip").status_code == 200
    assert visitor.put(f"{file_request['url']}/files/in.txt", content=b"in").status_code == 201
    metrics = owner.get("/metrics").text
    running.stop()  # waits for the notifications
    assert ("downloaded", {"id": share["id"], "owner": "token:tester", "downloads": 1, "max_downloads": 3},
            ["notes.txt"]) in recorder.events
    assert ("downloaded", {"id": share["id"], "owner": "token:tester", "downloads": 2, "max_downloads": 3},
            ["notes.txt"]) in recorder.events
    received = [event for event in recorder.events if event[0] == "received"]
    assert received == [("received", {"id": file_request["id"], "owner": "token:tester", "title": "Inbox",
                                      "max_files": None}, ["in.txt"])]
    assert all(share["url"].rsplit("/", 1)[1] not in str(event) for event in recorder.events)  # no token leaks
    assert _metric(metrics, 'upload_service_share_downloads_total{kind="file"}') == 1
    assert _metric(metrics, 'upload_service_share_downloads_total{kind="zip"}') == 1
    assert _metric(metrics, "upload_service_request_files_total") == 1


def test_link_tokens_never_reach_the_access_log(upload_service_factory, caplog) -> None:
    """Whoever reads the log must not be able to open a link from it: the token is written as [redacted]."""
    caplog.set_level(logging.INFO, logger="upload_service.access")
    running = upload_service_factory()
    owner, visitor = running.client(), running.client(token=None)
    file = owner.put("/api/files/a.txt", content=b"a").json()
    share = owner.post("/api/shares", json={"files": [file["id"]]}).json()
    file_request = owner.post("/api/requests", json={"title": "Inbox"}).json()
    token, request_token = share["url"].rsplit("/", 1)[1], file_request["url"].rsplit("/", 1)[1]
    assert visitor.get(f"{share['url']}/files/{file['id']}").status_code == 200
    assert visitor.put(f"{file_request['url']}/files/in.txt", content=b"in").status_code == 201
    lines = [record.getMessage() for record in caplog.records if record.name == "upload_service.access"]
    assert f"GET /s/[redacted]/files/{file['id']} 200" in lines
    assert "PUT /r/[redacted]/files/in.txt 201" in lines
    assert not [line for line in lines if token in line or request_token in line]
    assert [record.path for record in caplog.records if getattr(record, "path", "").startswith("/s/")] == [
        f"/s/[redacted]/files/{file['id']}"]
