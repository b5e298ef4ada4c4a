"""moto's S3 server (as ``python -m moto.server`` runs it) with S3's per-key atomicity, for the tests.

S3 applies a conditional write (``If-None-Match: *``, ``If-Match``) atomically: of two racing creates of one
key exactly one succeeds. moto checks the condition and then writes, and its threaded server lets another
request in between: on a busy machine two racing creates both won now and then (2 rounds in 300 of eight
racing creates, with the CPU loaded as CI loads it), so two operations both held one blob's journal entry and a
delete racing a move left a record whose bytes it had deleted. Here every small write and every delete of a key
runs alone, as S3 would apply it; large bodies (blobs, multipart parts) stream in parallel as before.

    python -m tests.moto_s3 -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import argparse
import os
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

SMALL_BODY = 1024 * 1024
STRIPES = 256


class PerKeyAtomicity:
    """WSGI middleware: small writes and deletes of one key (bucket and path) one at a time."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self._locks = [threading.Lock() for _ in range(STRIPES)]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._atomic(environ):
            return self.app(environ, start_response)
        key = f"{environ.get('HTTP_HOST', '')}{environ.get('PATH_INFO', '')}".encode()
        with self._locks[zlib.crc32(key) % STRIPES]:
            return list(self.app(environ, start_response))  # the whole exchange inside the lock

    @staticmethod
    def _atomic(environ: dict[str, Any]) -> bool:
        if "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ:
            return True
        method = environ.get("REQUEST_METHOD")
        if method == "DELETE":
            return True
        length = environ.get("CONTENT_LENGTH") or ""
        return method in ("PUT", "POST") and length.isdigit() and int(length) <= SMALL_BODY


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto.server sets it
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]
    run_simple(args.host, args.port, PerKeyAtomicity(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
