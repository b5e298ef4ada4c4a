"""A test plugin: local storage slowed to ``THROTTLE_MBPS`` (default 200 MB/s), like a busy disk or S3.

Load it with ``PLUGINS=tests.plugins.throttled_storage`` and ``STORAGE_BACKEND=throttled``.
"""

from __future__ import annotations

import os
import time

from upload_service import hookimpl
from upload_service.builtin.local_storage import LocalObjectWriter, LocalStorage


class ThrottledWriter(LocalObjectWriter):
    rate = float(os.environ.get("THROTTLE_MBPS", "200")) * 1_000_000

    def _write_sync(self, chunks: list[bytes]) -> None:
        started = time.perf_counter()
        super()._write_sync(chunks)
        time.sleep(max(0.0, sum(map(len, chunks)) / self.rate - (time.perf_counter() - started)))


class ThrottledStorage(LocalStorage):
    name = "throttled"

    def writer(self) -> ThrottledWriter:
        return ThrottledWriter(self)


@hookimpl
def register_storage_backends(register, service):
    register("throttled", lambda service: ThrottledStorage(service.settings.upload_dir))
