"""A small asyncio TCP proxy that breaks the first PATCH (or ``method``) passing through it, for fault tests.

``mode="cut"`` resets both connections after ``after`` bytes of the PATCH request went upstream (the client
sees a broken connection, the server a disconnect); ``mode="stall"`` stops forwarding there but keeps both
connections open, like a network that silently dropped the client. After ``times`` breaks (one by default),
connections pass untouched; set ``times`` to ``breaks`` to stop breaking. Put it between the service and S3
(``method=b"PUT"``) and it is storage that fails mid-write.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class BreakingProxy:
    def __init__(self, upstream_port: int, *, after: int, mode: str = "cut", method: bytes = b"PATCH",
                 times: int = 1) -> None:
        self.upstream_port = upstream_port
        self.after = after
        self.mode = mode
        self.request_start = method + b" "
        self.times = times
        self.breaks = 0
        self.broken = threading.Event()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stalled: list[asyncio.StreamWriter] = []

    def __enter__(self) -> BreakingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for writer in self._stalled:
            writer.transport.abort()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stalled_upstream(self) -> Any:
        """The socket towards the server of the connection that stalled (once ``broken``, in ``stall`` mode)."""
        return self._stalled[0].get_extra_info("socket")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        back = asyncio.create_task(self._pump(up_reader, client_writer))
        try:
            await self._forward(client_reader, up_writer, client_writer)
            await back  # the answer still flows back after the request went up
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if up_writer not in self._stalled:
                back.cancel()
                up_writer.transport.abort()
                client_writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter,
                       client: asyncio.StreamWriter) -> None:
        counting = False
        sent = 0
        while data := await reader.read(65536):
            if self.breaks < self.times and not counting and data.startswith(self.request_start):
                counting = True
            if counting and self.breaks < self.times and sent + len(data) >= self.after:
                self.breaks += 1
                up.write(data[: self.after - sent])
                await up.drain()
                self.broken.set()
                if self.mode == "cut":
                    up.transport.abort()
                    client.transport.abort()
                else:
                    self._stalled.extend([up, client])
                return
            sent += len(data) if counting else 0
            up.write(data)
            await up.drain()
        if up.can_write_eof():
            up.write_eof()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()  # the server closed: so does the proxy, towards the client
        except (ConnectionError, asyncio.CancelledError):
            pass
