"""The pytest11 fixtures plugin authors get with upload-service (``upload_service.testing``), run as an author would."""

from __future__ import annotations

import asyncio
import socket
import threading
from urllib.parse import urlsplit

import pytest
from quart import Quart

from upload_service import Settings, StartupError, UploadRejected, UploadService, create_app, hookimpl
from upload_service.plugins import make_plugin_manager
from upload_service.testing import TEST_LOGIN, TEST_TOKEN, MemoryStorage, MemoryStoragePlugin


class WordCount:
    """A plugin as an author would write it: records the number of words of text uploads."""

    name = "word_count"

    @hookimpl
    def process_upload(self, file, service):
        return {"words": None} if not file.content_type.startswith("text/") else None


class NoExecutables:
    name = "no_executables"

    @hookimpl
    async def validate_upload(self, upload, identity, service):
        if upload.filename.endswith(".exe"):
            raise UploadRejected("executables are not accepted", reason="executable")


def test_factory_starts_a_real_service_with_plugins(upload_service_factory) -> None:
    running = upload_service_factory(plugins=[WordCount()], max_upload_size="1KiB")
    client = running.client()
    stored = client.put("/api/files/a.bin", content=b"\x00\x01", headers={"Content-Type": "application/octet-stream"})
    assert stored.status_code == 201 and stored.json()["metadata"] == {"words": None}
    assert client.put("/api/files/big.bin", content=b"x" * 2000).status_code == 413  # its settings apply
    assert running.client(token=None).get("/api/files").status_code == 401
    assert running.service.pm.has_plugin("word_count")


def test_a_temporary_plugin_applies_only_while_registered(upload_service_factory, upload_service_plugin) -> None:
    running = upload_service_factory()
    client = running.client()
    name = upload_service_plugin(running, NoExecutables())
    assert name == "no_executables"
    refused = client.put("/api/files/setup.exe", content=b"MZ")
    assert refused.status_code == 422 and refused.json()["detail"] == "executables are not accepted"
    assert client.get("/api/files").json()["files"] == []
    running.service.pm.unregister(name=name)  # what the fixture does after the test
    assert client.put("/api/files/setup.exe", content=b"MZ").status_code == 201


class HoldsTheLoop:
    """Blocks the server's event loop as soon as the service has started, until the test releases it: a request
    sent meanwhile must wait for an answer, never be refused."""

    name = "holds_the_loop"

    def __init__(self) -> None:
        self.release = threading.Event()

    @hookimpl
    def background_tasks(self, service):
        async def hold() -> None:
            self.release.wait(30)  # on purpose: nothing else runs on the loop meanwhile

        return [hold]


def test_the_factory_returns_once_the_port_takes_connections(upload_service_factory) -> None:
    hold = HoldsTheLoop()
    try:
        running = upload_service_factory(plugins=[hold])
        address = urlsplit(running.url)
        with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
            hold.release.set()
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            answer = b"".join(iter(lambda: connection.recv(65536), b""))
    finally:
        hold.release.set()
    assert answer.startswith(b"HTTP/1.1 200")
    for started in [upload_service_factory() for _ in range(3)]:  # and at once, every time
        assert started.client().get("/healthz").status_code == 200


def test_a_failed_start_is_an_error_in_the_test(upload_service_factory) -> None:
    class Refuses:
        name = "refuses"

        @hookimpl
        def startup(self, service):
            raise StartupError("not today")

    with pytest.raises(RuntimeError, match="not today"):
        upload_service_factory(plugins=[Refuses()])


async def _on_the_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def _fails() -> None:
    raise LookupError("raised on the server's loop")


def test_run_runs_a_coroutine_on_the_servers_loop(upload_service_factory) -> None:
    running = upload_service_factory()
    stored = running.client().put("/api/files/a.txt", content=b"hello", headers={"Content-Type": "text/plain"})
    assert stored.status_code == 201
    objects = running.run(running.service.storage.list("files/"))
    assert [(item.size, item.metadata["filename"]) for item in objects] == [(5, "a.txt")]
    assert running.run(_on_the_loop()) is running.loop
    with pytest.raises(LookupError, match="server's loop"):
        running.run(_fails())


def test_a_host_app_serves_its_own_routes_and_the_service(upload_service_host, tmp_path) -> None:
    app = Quart("host")

    @app.route("/hello")
    async def hello() -> str:
        return "the host's own page"

    UploadService(app, url_prefix="/uploads", settings=Settings(
        secret_key="host-secret-0123456789", upload_dir=tmp_path, api_tokens=f"{TEST_LOGIN}:{TEST_TOKEN}"))
    running = upload_service_host(app)
    assert running.url == running.app_url + "/uploads"
    stored = running.client().put("/api/files/b.txt", content=b"embedded")
    assert stored.status_code == 201 and stored.json()["filename"] == "b.txt"
    assert running.client().get(f"/api/files/{stored.json()['id']}/content").content == b"embedded"
    assert running.client(base_url=running.app_url).get("/hello").text == "the host's own page"
    with pytest.raises(LookupError, match="no upload service named 'other'"):
        upload_service_host(app, name="other")


def test_without_entry_points_only_the_given_plugins_run(upload_service_factory) -> None:
    running = upload_service_factory(plugins=[WordCount()], entry_points=False)
    names = {name for name, _ in running.service.pm.list_name_plugin()}
    assert names == {"word_count", "memory_storage", "upload_service.builtin.api_tokens"}  # no tus, local, s3...
    assert running.service.storage.name == "memory"
    stored = running.client().put("/api/files/c.bin", content=b"\x00",
                                  headers={"Content-Type": "application/octet-stream"})
    assert stored.status_code == 201 and stored.json()["metadata"] == {"words": None}
    assert "tus_create" not in running.service.endpoints()
    assert [item.size for item in running.run(running.service.storage.list("files/"))] == [1]
    assert not (running.upload_dir / "objects").exists()


def test_the_memory_backend_is_a_plugin_like_any_other(upload_service_factory) -> None:
    running = upload_service_factory(plugins=[MemoryStoragePlugin()], storage_backend="memory")
    assert "tus_create" in running.service.endpoints() and running.service.storage.name == "memory"
    assert running.client().put("/api/files/d.txt", content=b"in memory").status_code == 201
    assert not (running.upload_dir / "objects").exists()


def test_entry_points_false_in_the_core(tmp_path) -> None:
    assert make_plugin_manager(entry_points=False).list_name_plugin() == []
    settings = {"secret_key": "core-secret-0123456789", "upload_dir": tmp_path}
    with pytest.raises(StartupError, match="entry_points=False"):
        create_app(Settings(**settings), entry_points=False)
    app = create_app(Settings(storage_backend="memory", **settings), plugins=[MemoryStoragePlugin()],
                     entry_points=False)
    assert isinstance(app.extensions["upload_service"].storage, MemoryStorage)
