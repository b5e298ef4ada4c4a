"""A test-only fault point: the instance dies (``os._exit``) after a request's work is committed and its answer
is kept, and before a byte of the answer goes out, as a ``kill -9`` at the worst moment would do.

Active only with ``CRASH_AFTER_COMMIT_DIR`` set, and only for a request carrying ``X-Crash-Once: <name>`` whose
answer is a success: the first instance to create ``<dir>/<name>`` dies, so a retry of the same request (nginx's,
or the client's) on another instance goes through. Load it with ``PLUGINS=tests.plugins.crash_after_commit``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from quart import request

from upload_service import hookimpl

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _first_to_crash(folder: str, name: str) -> bool:
    try:
        os.close(os.open(Path(folder) / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


@hookimpl
def register_routes(blueprint, service) -> None:
    folder = os.environ.get("CRASH_AFTER_COMMIT_DIR")
    if not folder:
        return

    @blueprint.after_request
    async def crash_before_answering(response):
        name = request.headers.get("X-Crash-Once", "")
        if NAME.fullmatch(name) and response.status_code < 300 and _first_to_crash(folder, name):
            os._exit(70)
        return response
