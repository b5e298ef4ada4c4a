"""A real webhook receiver on 127.0.0.1 for the webhooks plugin's tests: it verifies every delivery with the
Standard Webhooks library from PyPI, and can fail a number of times, or hang, before it takes them."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Delivery:
    at: float  # time.time() when it arrived
    headers: dict[str, str]
    payload: dict[str, Any]  # as standardwebhooks verified it


@dataclass
class Receiver:
    secret: str
    port: int = 0
    fail_first: int = 0
    attempts: list[float] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # signatures that did not verify
    release: threading.Event = field(default_factory=threading.Event)  # cleared: requests hang, then fail (503)
    hanging: threading.Event = field(default_factory=threading.Event)  # a request is waiting for release

    def __post_init__(self) -> None:
        self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts.append(time.time())
                if receiver.release.is_set():
                    status = receiver.take(body, {name.lower(): value for name, value in self.headers.items()})
                else:  # a hung request is never taken, even once released: its sender may be gone
                    receiver.hanging.set()
                    receiver.release.wait(10)
                    status = 503
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        if len(self.attempts) <= self.fail_first:
            return 503
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except Exception as error:
            self.refused.append(str(error))
            return 400
        self.deliveries.append(Delivery(time.time(), headers, payload))
        return 204

    def types(self) -> list[str]:
        return [delivery.payload["type"] for delivery in self.deliveries]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [delivery.payload["data"] for delivery in self.deliveries if delivery.payload["type"] == event_type]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A port nothing listens on (for now): an endpoint that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

