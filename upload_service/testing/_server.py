"""Serving an app with Hypercorn in a background thread of the test process, ready once it can take requests.

The listening socket is bound and listening before Hypercorn starts and is handed to it (``fd://``), so the
port is never free for someone else to take, and a request sent as soon as ``start`` returns waits in the
kernel's queue until Hypercorn accepts it instead of being refused. ``start`` returns once the app's start-up
(``before_serving``, ``while_serving``, the service's ``startup`` hooks) has finished, as the ASGI lifespan
reports it, so a failing start-up is an error in the test, not a server that never answers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from hypercorn.config import Config
    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

T = TypeVar("T")
START_TIMEOUT = 30.0


class ThreadServer:
    """One ASGI app on 127.0.0.1 with an event loop of its own in a daemon thread."""

    def __init__(self, app: Any, *, loop: asyncio.AbstractEventLoop | None = None,
                 configure: Callable[[Config], None] | None = None) -> None:
        """``loop``: the event loop to serve on (a new asyncio one by default); ``configure`` adjusts Hypercorn's
        ``Config`` (keep-alive timeout, error log) before serving."""
        self.app = app
        self.loop = loop if loop is not None else asyncio.new_event_loop()
        self._configure = configure
        self.url = ""
        self._stopping = asyncio.Event()
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._fd: int | None = None  # the listening socket until Hypercorn owns it
        self._thread = threading.Thread(target=self._main, name="upload-service-test-server", daemon=True)

    def start(self, timeout: float = START_TIMEOUT) -> str:
        """Serve the app; returns its URL once it takes requests (raises if its start-up failed)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        host, port = listener.getsockname()
        self._fd = listener.detach()
        self.url = f"http://{host}:{port}"
        self._thread.start()
        if not self._started.wait(timeout):
            self.stop()
            raise RuntimeError(f"the app did not finish starting within {timeout}s")
        if self._failure is not None:
            self.stop(timeout)
            raise RuntimeError(f"the app did not start: {self._failure}") from self._failure
        return self.url

    def _main(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"fd://{self._fd}"]
        config.accesslog = None
        if self._configure is not None:
            self._configure(config)
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(serve(self._watch_lifespan, config, shutdown_trigger=self._stopping.wait,
                                               mode="asgi"))
        except BaseException as error:  # reported by ``start`` or ``stop``
            self._failure = error
        finally:
            if self._fd is not None:  # start-up failed before Hypercorn took the socket
                os.close(self._fd)
                self._fd = None
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self._started.set()

    async def _watch_lifespan(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """The app itself, but ``start`` learns when its start-up is complete (Hypercorn then takes the socket)."""
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def reporting_send(message: ASGISendEvent) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                self._fd = None  # Hypercorn wraps it next, and closes it when it stops
                self._started.set()

        await self.app(scope, receive, reporting_send)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run ``coroutine`` on the server's event loop and return its result (its exception is raised here)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("run() waits for the server's loop: call it from the test's thread, not from the loop")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def _tasks(self) -> str:
        """Where each task of the server's loop waits (read from this thread: a best-effort report for a test's
        failure message)."""
        lines = []
        for task in list(asyncio.all_tasks(self.loop)):
            frames = task.get_stack(limit=6)
            where = " <- ".join(f"{f.f_code.co_name} ({f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno})"
                                for f in reversed(frames))
            lines.append(f"  {task.get_name()}: {where}")
        return "\n".join(lines)

    def stop(self, timeout: float = START_TIMEOUT) -> None:
        """Shut the app down (its ``after_serving`` runs) and wait for the thread; a second call does nothing."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the app did not stop within {timeout}s; its loop still runs:\n{self._tasks()}")
        self.loop.close()
