"""Test-only fault points: the instance dies (``os._exit``) at the worst moments of a request, as a ``kill -9``
there would do, once per name (the first instance to create ``<CRASH_AFTER_COMMIT_DIR>/<name>`` dies; a retry of
the same request, nginx's or the client's, then goes through on another instance).

- ``X-Crash-Once: <name>`` on a request: after its work is committed and its answer kept, before a byte of the
  answer goes out (a success only).
- a file named ``crash-in-commit-<name>...``: right after it is committed, before any answer is kept
  (``process_upload``).
- a file named ``crash-on-persist-<name>...`` or ``crash-on-delete-<name>...``: when plugins hear that it was
  persisted or deleted, which runs while the request keeps its answer (``upload_persisted``, ``file_deleted``).
- a file named ``crash-after-move-<name>...``: right after the storage moved it (a persist), before the next
  file of the same persist moves (the storage's ``move``, wrapped at ``startup``).

Active only with ``CRASH_AFTER_COMMIT_DIR`` set. Load it with ``PLUGINS=tests.plugins.crash_after_commit``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from quart import request

from upload_service import hookimpl

NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
FOLDER = "CRASH_AFTER_COMMIT_DIR"


def crash_once(name: str) -> None:
    """Die, unless another instance already died for ``name``."""
    folder = os.environ.get(FOLDER)
    if not folder or not NAME.fullmatch(name):
        return
    try:
        os.close(os.open(Path(folder) / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(70)


def _named(filename: str, prefix: str) -> str | None:
    return filename[len(prefix):].split(".")[0] if filename.startswith(prefix) else None


@hookimpl
def register_routes(blueprint, service) -> None:
    if not os.environ.get(FOLDER):
        return

    @blueprint.after_request
    async def crash_before_answering(response):
        if response.status_code < 300:
            crash_once(request.headers.get("X-Crash-Once", ""))
        return response


@hookimpl
def process_upload(file, service) -> None:
    if (name := _named(file.filename, "crash-in-commit-")) is not None:
        crash_once(name)


@hookimpl
def upload_persisted(file, service) -> None:
    if (name := _named(file.filename, "crash-on-persist-")) is not None:
        crash_once(name)


@hookimpl
def file_deleted(file, service) -> None:
    if (name := _named(file.filename, "crash-on-delete-")) is not None:
        crash_once(name)


@hookimpl
def startup(service) -> None:
    if not os.environ.get(FOLDER):
        return
    move = service.storage.move

    async def move_then_crash(src, dst, metadata=None):
        stored = await move(src, dst, metadata)
        if (name := _named((metadata or {}).get("filename", ""), "crash-after-move-")) is not None:
            crash_once(name)
        return stored

    service.storage.move = move_then_crash
