"""Stripped-down servers for ``bench_small_ceiling``: how fast 10 KiB PUTs can go on Hypercorn here with less.

Each app reads the body and answers 201 with a little JSON, adding one layer of the service's work at a time
(a framework, hashing, the local storage's durable commit), so the benchmark can say what each layer costs
and how far the service is from the best any design on this stack could do. Not used by the service.

    python -m hypercorn -k uvloop -b 127.0.0.1:8000 tests.perf.ceiling_apps:asgi_storage
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from quart import Quart, request

from upload_service.builtin.local_storage import LocalStorage
from upload_service.builtin.local_storage.durable import rename_noreplace
from upload_service.builtin.local_storage.writeback import write_out
from upload_service.files import new_file_id

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]



async def _answer(send: Send, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _chunks(receive: Receive):
    while True:
        message = await receive()
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body"):
            return


async def asgi(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Hypercorn and the ASGI exchange alone."""
    if scope["type"] != "http":
        return
    size = 0
    async for chunk in _chunks(receive):
        size += len(chunk)
    await _answer(send, 201, {"size": size})


async def asgi_sha256(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Plus sha256 of the body, on the event loop."""
    if scope["type"] != "http":
        return
    digest, size = hashlib.sha256(), 0
    async for chunk in _chunks(receive):
        digest.update(chunk)
        size += len(chunk)
    await _answer(send, 201, {"size": size, "sha256": digest.hexdigest()})


_storage: LocalStorage | None = None


async def asgi_storage(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Plus the service's local storage: staging file, record, written out, rename into place, folder fsync (shared)."""
    global _storage
    if scope["type"] != "http":
        return
    if _storage is None:
        _storage = LocalStorage(os.environ.get("CEILING_UPLOAD_DIR") or tempfile.mkdtemp(prefix="ceiling-"),
                                "relaxed" if os.environ.get("CEILING_RELAXED") else "full")
        await _storage.open()  # its threads live as long as this benchmark's process
    async with _storage.writer() as writer:
        async for chunk in _chunks(receive):
            await writer.write(chunk)
        await writer.finish()
        stored = await writer.commit(f"files/bench/{new_file_id()}", {"filename": "small.bin"})
    await _answer(send, 201, {"size": stored.size, "sha256": stored.sha256})


_syscalls_pool = ThreadPoolExecutor(32)
_syscalls_root: str | None = None


def _durable_create(name: str, chunks: list[bytes]) -> str:
    """The system calls of the local storage's commit of a small file under ``DURABILITY=full``, and nothing else:
    the least that storing it durably, visible whole or not at all, can cost from Python (one file, its record in
    an xattr, its bytes written out, a no-replace rename, the folder fsynced; the storage shares that fsync
    between the uploads that finish together, this does one per file)."""
    staging, target = f"{_syscalls_root}/staging/{name}", f"{_syscalls_root}/objects/{name}"
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.writev(fd, chunks)
        os.setxattr(fd, "user.upload_service", json.dumps(
            {"size": sum(map(len, chunks)), "sha256": digest.hexdigest()}).encode())
        write_out(fd)
    finally:
        os.close(fd)
    rename_noreplace(Path(staging), Path(target))
    folder = os.open(f"{_syscalls_root}/objects", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return digest.hexdigest()


async def asgi_syscalls(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Bare ASGI plus those system calls in one thread trip (32 threads, as the local storage has)."""
    global _syscalls_root
    if scope["type"] != "http":
        return
    if _syscalls_root is None:
        _syscalls_root = tempfile.mkdtemp(prefix="ceiling-", dir=os.environ.get("CEILING_UPLOAD_DIR"))
        for folder in ("staging", "objects"):
            os.mkdir(f"{_syscalls_root}/{folder}")
    chunks = [chunk async for chunk in _chunks(receive)]
    sha256 = await asyncio.get_running_loop().run_in_executor(_syscalls_pool, _durable_create, new_file_id(), chunks)
    await _answer(send, 201, {"size": sum(map(len, chunks)), "sha256": sha256})


quart = Quart(__name__)


@quart.route("/api/files/<name>", methods=["PUT"])
async def _quart_put(name: str) -> Any:
    """Quart on top of the ASGI exchange: request and app contexts, routing, a JSON response."""
    size = 0
    async for chunk in request.body:
        size += len(chunk)
    return {"name": name, "size": size}, 201
