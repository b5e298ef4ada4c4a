"""A complete host app that embeds the upload service twice, with its own login as the auth provider.

Run it with ``hypercorn examples.host_app:app`` (the host's own environment variables: ``HOST_APP_SECRET``,
``HOST_APP_DATA`` for where files go). The host keeps its own routes, error pages, JSON provider and
session; the service only adds what lives under its prefixes:

- ``/files``: the main upload area, files under ``$HOST_APP_DATA/files``;
- ``/scratch``: a second, stricter instance (1 KiB per file, no PDFs) with its own storage and plugins.

Both see the host's signed-in user through ``HostLogin``, registered programmatically (no entry point). The
services' settings are the ``Settings(...)`` below and nothing else: the service's variables in the environment
(``MAX_UPLOAD_SIZE``, ``UPLOAD_DIR`` ...) do not change them. ``/notes`` is the host's own page uploading to
``/files`` with the CSRF token it gets from ``files.csrf_token()``.
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from quart import Quart, Request, jsonify, redirect, render_template_string, request, session
from quart.json.provider import DefaultJSONProvider

from upload_service import CSRF_HEADER, Identity, Settings, UploadRejected, UploadService, hookimpl

DATA = Path(os.environ.get("HOST_APP_DATA", "./host-app-data"))
USERS = {"ann": "correct horse", "ben": "battery staple"}  # the host's own (demo) user store


class HostJSONProvider(DefaultJSONProvider):
    """The host's tweak: decimals as strings. The service's API does not depend on it."""

    @staticmethod
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        return DefaultJSONProvider.default(value)


app = Quart(__name__)
app.json = HostJSONProvider(app)
app.secret_key = os.environ.get("HOST_APP_SECRET", "change-me-host-secret-0123456789")
app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
app.config["HOST_STARTED"] = False


@app.before_serving
async def host_startup() -> None:
    app.config["HOST_STARTED"] = True


@app.route("/")
async def home() -> Any:
    user = session.get("user")
    return f"<h1>Host home</h1><p>{'Hello ' + user if user else 'Not signed in'}</p>"


@app.route("/api/status")
async def status() -> Any:
    """The host's own /api route: not the service's (which lives under /files/api)."""
    return jsonify({"host": True, "started": app.config["HOST_STARTED"], "price": Decimal("9.99")})


@app.route("/login", methods=["POST"])
async def login() -> Any:
    form = await request.form
    if USERS.get(form.get("user", "")) != form.get("password"):
        return jsonify({"error": "bad login"}), 401
    session["user"] = form["user"]
    return redirect("/")


NOTES_PAGE = """<!doctype html>
<meta name="csrf-token" content="{{ csrf_token }}">
<h1>Host notes</h1>
<form id="note"><input type="file" name="file" required><button>Upload</button></form>
<p id="answer"></p>
<script>
  // the host's own page sends the service's CSRF token with its cookie-authenticated upload
  document.getElementById("note").addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = await fetch({{ upload_url | tojson }}, {
      method: "POST", body: new FormData(event.target),
      headers: {[{{ csrf_header | tojson }}]: document.querySelector("meta[name=csrf-token]").content},
    });
    document.getElementById("answer").textContent = answer.ok ? "stored" : (await answer.json()).detail;
  });
</script>
"""


@app.route("/notes")
async def notes() -> Any:
    """The host's own upload page: the service gives the session's CSRF token and its upload URL."""
    if not session.get("user"):
        return redirect("/")
    return await render_template_string(NOTES_PAGE, csrf_token=files.csrf_token(), csrf_header=CSRF_HEADER,
                                        upload_url=files.url("upload"))


@app.route("/logout", methods=["POST"])
async def logout() -> Any:
    session.pop("user", None)
    return redirect("/")


@app.errorhandler(404)
async def not_found(error: Exception) -> Any:
    return "<h1>Host: nothing here</h1>", 404


class HostLogin:
    """The host's session login as an upload-service auth provider: its user becomes the identity."""

    name = "host"
    title = "Sign in on the host"
    login_url = "/"  # the host's own login page

    async def authenticate(self, request: Request) -> Identity | None:
        user = session.get("user")
        return Identity(id=f"host:{user}", name=user, provider=self.name) if user else None


class HostLoginPlugin:
    """Registers ``HostLogin``; given to ``UploadService(plugins=[...])`` instead of an entry point."""

    name = "host_login"

    @hookimpl
    def register_auth_providers(self, register, service) -> None:
        register(HostLogin())


class Heartbeat:
    """A background task that shows the service follows the host's serving lifecycle (start and stop)."""

    name = "heartbeat"

    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    def background_tasks(self, service):
        async def beat() -> None:
            try:
                while True:
                    self.path.write_text("running")
                    await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                self.path.write_text("stopped")
                raise

        return [beat]


class NoPDFs:
    """Only on the scratch area: refuse PDFs before any byte is stored."""

    name = "no_pdfs"

    @hookimpl
    def validate_upload(self, upload, identity, service) -> None:
        if upload.filename.lower().endswith(".pdf"):
            raise UploadRejected("no PDFs in the scratch area", reason="pdf")


files = UploadService(
    app, url_prefix="/files", name="files",
    settings=Settings(upload_dir=DATA / "files"),
    plugins=[HostLoginPlugin(), Heartbeat(DATA / "heartbeat")],
)
scratch = UploadService(
    app, url_prefix="/scratch", name="scratch",
    settings=Settings(upload_dir=DATA / "scratch", max_upload_size="1KiB", temp_upload_ttl="1h"),
    plugins=[HostLoginPlugin(), NoPDFs()],
)
