"""A test plugin: local storage that fails in the middle of a write, as a dying disk or a lost network store does.

Load it with ``PLUGINS=tests.plugins.faulty_storage`` and ``STORAGE_BACKEND=faulty``. A write fails once it has
taken more than ``FAULT_AFTER_BYTES`` (default 1 MiB), so small uploads still work; ``FAULT_MODE`` says how:
``error`` raises OSError(EIO), ``timeout`` waits ``FAULT_STALL_SECONDS`` (default 1) and raises TimeoutError
(a network client's read timeout), ``hang`` never answers.
"""

from __future__ import annotations

import asyncio
import errno
import os

from upload_service import hookimpl
from upload_service.builtin.local_storage import LocalObjectWriter, LocalStorage


class FaultyWriter(LocalObjectWriter):
    after = int(os.environ.get("FAULT_AFTER_BYTES", str(1024 * 1024)))
    mode = os.environ.get("FAULT_MODE", "error")
    stall = float(os.environ.get("FAULT_STALL_SECONDS", "1"))

    async def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.after:
            await self._fail()
        await super().write(chunk)

    async def _fail(self) -> None:
        if self.mode == "hang":
            await asyncio.Event().wait()
        if self.mode == "timeout":
            await asyncio.sleep(self.stall)
            raise TimeoutError("the storage did not answer")
        raise OSError(errno.EIO, "Input/output error (injected)")


class FaultyStorage(LocalStorage):
    name = "faulty"

    def writer(self) -> FaultyWriter:
        return FaultyWriter(self)


@hookimpl
def register_storage_backends(register, service):
    register("faulty", lambda service: FaultyStorage(service.settings.upload_dir))
