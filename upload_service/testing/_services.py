"""Real upload services for tests: the stand-alone app, or a host's own app with services mounted in it."""

from __future__ import annotations

from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ._memory import MemoryStoragePlugin
from ._server import ThreadServer

T = TypeVar("T")
TEST_TOKEN = "plugin-tester-token-0123456789"
TEST_LOGIN = "tester"


@dataclass
class RunningService:
    """A service served on 127.0.0.1 until the test ends.

    ``url`` is the service's own URL (the app's root plus the service's ``url_prefix``), ``app_url`` the app's
    root: the same for the stand-alone app.
    """

    url: str
    service: Any
    app: Any
    upload_dir: Path
    app_url: str
    server: ThreadServer
    _clients: list[Any] = field(default_factory=list)

    @property
    def loop(self) -> Any:
        """The server's event loop (it runs in another thread: use ``run`` to run code on it)."""
        return self.server.loop

    def client(self, token: str | None = TEST_TOKEN, **options: Any) -> Any:
        """An ``httpx.Client`` on the service's URL (``base_url=`` another), sending ``Authorization: Bearer
        <token>`` unless token is None; closed when the service stops."""
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        options.setdefault("base_url", self.url)
        options.setdefault("timeout", 30)
        client = httpx.Client(headers=headers, **options)
        self._clients.append(client)
        return client

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coroutine`` on the server's event loop and return its result: ``running.run(
        running.service.storage.stat(key))``. Objects tied to a loop (the S3 client, locks) need that loop."""
        return self.server.run(coroutine, timeout)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.server.stop()


def serve(app: Any, service: Any) -> RunningService:
    """Serve ``app`` and describe ``service``, one of its upload services."""
    server = ThreadServer(app)
    app_url = server.start()
    return RunningService(app_url + service.url_prefix, service, app, Path(service.settings.upload_dir), app_url,
                          server)


def start_host_app(app: Any, name: str = "upload_service") -> RunningService:
    """Serve a host's own Quart app with ``UploadService(app, url_prefix=..., name=name)`` mounted in it."""
    service = app.extensions.get(name)
    if service is None:
        raise LookupError(f"the app has no upload service named {name!r} (app.extensions: {sorted(app.extensions)})")
    return serve(app, service)


def with_kit_plugins(plugins: Iterable[Any]) -> list[Any]:
    """``plugins`` plus what a service with ``entry_points=False`` needs to serve the kit's tests: memory
    storage, and the API tokens that ``RunningService.client`` signs in with (unless given already)."""
    from ..builtin import api_tokens

    plugins = list(plugins)
    names = {name_of(plugin) for plugin in plugins}
    for needed in (MemoryStoragePlugin(), api_tokens):
        if name_of(needed) not in names:
            plugins.append(needed)
    return plugins


def name_of(plugin: Any) -> str | None:
    """A plugin's name as the kit knows it: its ``name`` attribute, else its ``__name__`` (a module's)."""
    return getattr(plugin, "name", None) or getattr(plugin, "__name__", None)


def start_service(upload_dir: Path, plugins: Iterable[Any] = (), *, entry_points: bool = True,
                  **settings: Any) -> RunningService:
    """Build the stand-alone app with ``plugins`` and ``settings`` and serve it until stopped.

    ``entry_points=False`` leaves every installed plugin out, upload-service's own defaults included; the
    service then has ``plugins`` plus ``with_kit_plugins``, on ``STORAGE_BACKEND=memory`` unless told otherwise.
    """
    from ..app import create_app
    from ..settings import Settings

    values = {"secret_key": "plugin-test-secret-0123456789", "upload_dir": upload_dir,
              "api_tokens": f"{TEST_LOGIN}:{TEST_TOKEN}", **settings}
    if not entry_points:
        plugins = with_kit_plugins(plugins)
        values.setdefault("storage_backend", "memory")
    app = create_app(Settings(**values), plugins=list(plugins), entry_points=entry_points)
    return serve(app, next(iter(app.extensions.values())))
