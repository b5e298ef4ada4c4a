"""A host Quart app with its own session data and the upload service mounted under ``/uploads``.

Served by Hypercorn in ``test_github_embedded.py``: ``hypercorn "tests.github_embedded_host:create_host_app()"``.
"""

from __future__ import annotations

from quart import Quart, session

from upload_service import UploadService


def create_host_app() -> Quart:
    app = Quart("host")
    app.secret_key = "host-secret-key-0123456789abcdef"

    @app.route("/visit")
    async def visit() -> dict[str, int]:
        session["visits"] = session.get("visits", 0) + 1
        return {"visits": session["visits"]}

    UploadService(app, url_prefix="/uploads")
    return app
