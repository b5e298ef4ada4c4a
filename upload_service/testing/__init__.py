"""The plugin author's kit: pytest fixtures (a ``pytest11`` plugin: installed with upload-service, active at
once), conformance tests for storage backends, and an in-memory backend.

``upload_service_factory(plugins=[...], **settings)`` starts a real service, a Hypercorn server on
127.0.0.1 in a background thread of the test process, and returns a ``RunningService``: its ``url``, the
``service`` object, and ``client()`` for an httpx client signed in with a bearer token. Because the server
runs in-process, ``upload_service_plugin(running, plugin)`` can register a plugin on the live service for one
test (unregistered afterwards). Registration hooks (``register_*``, ``startup``, ``background_tasks``) run
once at start: pass such plugins to the factory instead.

Storage backends: a test module subclasses ``StorageContract`` (and ``ResumableStorageContract`` when the
backend can resume) and provides a fixture named ``storage``; ``MemoryStorage`` passes both, and
``MemoryStoragePlugin`` registers it as ``STORAGE_BACKEND=memory``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._contract import StorageContract
from ._memory import MemoryStorage, MemoryStoragePlugin
from ._resumable_contract import ResumableStorageContract

__all__ = [
    "MemoryStorage", "MemoryStoragePlugin", "ResumableStorageContract", "RunningService", "StorageContract",
    "TEST_LOGIN", "TEST_TOKEN", "start_service", "upload_service_factory", "upload_service_plugin",
]

TEST_TOKEN = "plugin-tester-token-0123456789"
TEST_LOGIN = "tester"


@dataclass
class RunningService:
    """A service serving on ``url`` until the test ends."""

    url: str
    service: Any
    app: Any
    upload_dir: Path
    _stop: Callable[[], None]
    _clients: list[Any] = field(default_factory=list)

    def client(self, token: str | None = TEST_TOKEN, **options: Any) -> Any:
        """An ``httpx.Client`` on this service, sending ``Authorization: Bearer <token>`` unless token is None."""
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30, **options)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(upload_dir: Path, plugins: list[Any], **settings: Any) -> RunningService:
    """Build the stand-alone app with ``plugins`` and ``settings`` and serve it in a thread until stopped."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from ..app import create_app
    from ..settings import Settings

    values = {"secret_key": "plugin-test-secret-0123456789", "upload_dir": upload_dir,
              "api_tokens": f"{TEST_LOGIN}:{TEST_TOKEN}", **settings}
    app = create_app(Settings(**values), plugins=plugins)
    service = next(iter(app.extensions.values()))
    config = Config()
    config.bind = [f"127.0.0.1:{_free_port()}"]
    config.accesslog = None
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()
    ready, failure = threading.Event(), []

    async def run() -> None:
        @app.before_serving
        async def started() -> None:
            ready.set()

        await serve(app, config, shutdown_trigger=stopping.wait)

    def thread_main() -> None:
        try:
            loop.run_until_complete(run())
        except BaseException as error:  # noqa: BLE001 - reported to the test below
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=thread_main, name="upload-service-test-server", daemon=True)
    thread.start()
    ready.wait(30)
    if failure:
        raise RuntimeError(f"the service did not start: {failure[0]}") from failure[0]

    def stop() -> None:
        if loop.is_closed():  # stopped already (a test stops it itself; the fixture stops it again)
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(30)
        loop.close()

    return RunningService(f"http://{config.bind[0]}", service, app, upload_dir, stop)


@pytest.fixture
def upload_service_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningService]]:
    """Start services: ``upload_service_factory(plugins=[MyPlugin()], max_upload_size="1MiB")``."""
    running: list[RunningService] = []

    def start(plugins: list[Any] | tuple[Any, ...] = (), **settings: Any) -> RunningService:
        started = start_service(tmp_path_factory.mktemp("upload-service"), list(plugins), **settings)
        running.append(started)
        return started

    yield start
    for started in running:
        started.stop()


@pytest.fixture
def upload_service_plugin() -> Iterator[Callable[..., Any]]:
    """Register a plugin on a running service for this test only: ``upload_service_plugin(running, plugin)``."""
    registered: list[tuple[Any, str]] = []

    def register(running: RunningService, plugin: Any, name: str | None = None) -> str:
        """Returns the plugin's name (``name``, else its ``name`` or ``__name__`` attribute)."""
        name = name or getattr(plugin, "name", None) or getattr(plugin, "__name__", None)
        plugin_name = running.service.pm.register(plugin, name=name)
        running.service.pm.check_pending()
        registered.append((running.service.pm, plugin_name))
        return plugin_name

    yield register
    for pm, name in registered:
        pm.unregister(name=name)
