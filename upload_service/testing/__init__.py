"""The plugin author's kit: pytest fixtures (a ``pytest11`` plugin: installed with upload-service, active at
once), conformance tests for storage backends, and an in-memory backend.

Fixtures:
- ``upload_service_factory(plugins=[...], entry_points=True, **settings)`` starts a real service, a Hypercorn
  server on 127.0.0.1 in a background thread of the test process, and returns a ``RunningService``: its
  ``url``, the ``service`` object, ``client()`` for an httpx client signed in with a bearer token, and
  ``run(coroutine)`` to run code on the server's event loop. It returns once the server takes requests.
  ``entry_points=False`` leaves every installed plugin out (upload-service's own defaults too): the service
  has only ``plugins``, plus memory storage (``STORAGE_BACKEND=memory`` unless given) and the API tokens
  ``client()`` uses.
- ``upload_service_host(app, name="upload_service")`` serves a host's own Quart app with an ``UploadService``
  mounted in it, the same way; ``url`` is then the service's URL under its prefix, ``app_url`` the app's.
- ``upload_service_plugin(running, plugin)`` registers a plugin on a live service for one test
  (unregistered afterwards). Registration hooks (``register_*``, ``startup``, ``background_tasks``) run once at
  start: pass such plugins to the factory instead.

Storage backends: a test module subclasses ``StorageContract`` (and ``ResumableStorageContract`` when the
backend can resume) and provides a fixture named ``storage``; ``MemoryStorage`` passes both, and
``MemoryStoragePlugin`` registers it as ``STORAGE_BACKEND=memory``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ._contract import StorageContract
from ._memory import MemoryStorage, MemoryStoragePlugin
from ._resumable_contract import ResumableStorageContract
from ._services import TEST_LOGIN, TEST_TOKEN, RunningService, name_of, start_host_app, start_service

__all__ = [
    "MemoryStorage", "MemoryStoragePlugin", "ResumableStorageContract", "RunningService", "StorageContract",
    "TEST_LOGIN", "TEST_TOKEN", "start_host_app", "start_service", "upload_service_factory", "upload_service_host",
    "upload_service_plugin",
]


@contextmanager
def _stopped_after() -> Iterator[Callable[[RunningService], RunningService]]:
    """``running(service)`` keeps ``service`` to stop when the block ends (a fixture's teardown)."""
    started: list[RunningService] = []

    def keep(service: RunningService) -> RunningService:
        started.append(service)
        return service

    try:
        yield keep
    finally:
        for service in started:
            service.stop()


@pytest.fixture
def upload_service_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningService]]:
    """Start services: ``upload_service_factory(plugins=[MyPlugin()], max_upload_size="1MiB")``; all stop after
    the test. ``entry_points=False``: only the plugins given (see the module docstring)."""
    with _stopped_after() as running:

        def start(plugins: list[Any] | tuple[Any, ...] = (), *, entry_points: bool = True,
                  **settings: Any) -> RunningService:
            return running(start_service(tmp_path_factory.mktemp("upload-service"), plugins,
                                         entry_points=entry_points, **settings))

        yield start


@pytest.fixture
def upload_service_host() -> Iterator[Callable[..., RunningService]]:
    """Serve host apps: ``upload_service_host(app)`` (``name=`` picks one of several mounted services)."""
    with _stopped_after() as running:

        def start(app: Any, name: str = "upload_service") -> RunningService:
            return running(start_host_app(app, name))

        yield start


@pytest.fixture
def upload_service_plugin() -> Iterator[Callable[..., Any]]:
    """Register a plugin on a running service for this test only: ``upload_service_plugin(running, plugin)``."""
    registered: list[tuple[Any, str]] = []

    def register(running: RunningService, plugin: Any, name: str | None = None) -> str:
        """Returns the plugin's name (``name``, else its ``name`` or ``__name__`` attribute)."""
        name = name or name_of(plugin)
        plugin_name: str = running.service.pm.register(plugin, name=name)
        running.service.pm.check_pending()
        registered.append((running.service.pm, plugin_name))
        return plugin_name

    yield register
    for pm, name in registered:
        pm.unregister(name=name)
