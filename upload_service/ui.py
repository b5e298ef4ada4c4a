"""Browser pages and the HTML fragments htmx swaps in: sign-in, the upload page, the file list, sign-out.

Fragment routes live under ``/ui/`` so that ``/api/`` stays JSON only. Every HTML answer carries a
Content-Security-Policy without inline scripts (``security_headers``); the page's behaviour comes from htmx
attributes and the static ES modules in ``static/js/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, redirect, render_template, request
from werkzeug.routing import BuildError

from .api.files import delete_own_file
from .assets import Assets, origin
from .auth import check_csrf, require_identity
from .lean_path import ignores_raw_uploads
from .responses import iso
from .security_headers import register_security_headers
from .sessions import csrf_token, sign_out

if TYPE_CHECKING:
    from .files import StoredFile
    from .identity import Identity
    from .service import UploadService

PAGE_SIZE = 25
FILES_CHANGED = "files-changed"  # the event that makes the file list refresh itself
STATIC_IMMUTABLE = "public, max-age=31536000, immutable"
_UNITS = ("bytes", "KB", "MB", "GB", "TB", "PB")


def human_size(size: int) -> str:
    """``1536000`` -> ``1.5 MB`` (decimal units, as file managers show them)."""
    value, unit = float(size), 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value, unit = value / 1000, unit + 1
    if unit == 0:
        return "1 byte" if size == 1 else f"{size} bytes"
    return f"{value:.1f} {_UNITS[unit]}" if value < 100 else f"{value:.0f} {_UNITS[unit]}"


def form_targets(providers: list[Any]) -> list[str] | None:
    """Where the page's form posts may be redirected besides this origin: the ``login_origins`` of providers
    whose sign-in button posts a form; None when such a provider does not say (then form posts are not limited).
    """
    targets: list[str] = []
    for provider in providers:
        if getattr(provider, "login_method", "get") != "post":
            continue
        declared = getattr(provider, "login_origins", None)
        if declared is None:
            return None
        targets.extend(found for found in map(origin, declared) if found)
    return targets


def preview_url(service: UploadService, file: StoredFile) -> str | None:
    """The thumbnail a plugin named in the file's ``preview`` metadata, if that plugin's route is still there."""
    endpoint = file.metadata.get("preview")
    if not isinstance(endpoint, str):
        return None
    try:
        return service.url(endpoint, file_id=file.id)
    except BuildError:  # the plugin that made the preview has been removed or disabled since
        return None


def register_ui_routes(bp: Blueprint, service: UploadService) -> None:
    assets = Assets(lambda path: service.url("static", filename=path), service.settings.static_url)
    policy = assets.content_security_policy(form_targets(service.auth.with_login()))
    bp.before_app_serving(assets.warn_if_unbundled)  # once per serving process, where operators look

    @bp.context_processor
    def page_context() -> dict[str, Any]:
        """What every page of this blueprint can use, plugin pages included (they extend ``base.html``)."""
        return {"service": service, "url": service.url, "csrf_token": csrf_token(service.name),
                "asset": assets.url, "htmx": assets.htmx(), "human_size": human_size, "iso": iso,
                "files_changed": FILES_CHANGED, "ui_parts": service.ui_parts, "tus_script": assets.tus(),
                "preview_url": lambda file: preview_url(service, file)}

    def resumable() -> dict[str, Any]:
        """tus-js-client and the tus endpoint for large files, when both exist (the tus plugin may be disabled)."""
        script = assets.tus()
        try:
            endpoint = service.url("tus_create")
        except BuildError:
            return {"tus": None}
        return {"tus": script, "tus_url": endpoint, "tus_threshold": service.settings.ui_tus_threshold}

    async def file_page(identity: Identity, cursor: str | None) -> dict[str, Any]:
        files, next_cursor = await service.files.page(identity, temporary=False, limit=PAGE_SIZE, cursor=cursor)
        return {"files": files, "cursor": cursor, "next_cursor": next_cursor}

    @bp.route("/", endpoint="index")
    async def index() -> Any:
        identity = await service.identify(request)
        if identity is None:
            return await render_template("upload_service/signin.html", providers=service.auth.with_login())
        page = await file_page(identity, request.args.get("cursor"))
        return await render_template("upload_service/index.html", identity=identity, **page, **resumable())

    @bp.route("/ui/files", methods=["GET"], endpoint="ui_files")
    async def file_rows() -> Any:
        """The rows of the file list (one page, with an "older files" row when there are more)."""
        identity = await require_identity(service, request)
        page = await file_page(identity, request.args.get("cursor"))
        return await render_template("upload_service/_file_rows.html", **page)

    @bp.route("/ui/files/<file_id>", methods=["DELETE"], endpoint="ui_delete_file")
    async def delete_row(file_id: str) -> Any:
        """Delete a file; the empty answer replaces its row and the list refreshes itself."""
        await delete_own_file(service, await require_identity(service, request), file_id)
        return Response("", 200, {"HX-Trigger": FILES_CHANGED}, content_type="text/html")

    @bp.route("/logout", methods=["GET"], endpoint="logout_page")
    async def logout_page() -> Any:
        return await render_template("upload_service/logout.html")

    @bp.route("/logout", methods=["POST"], endpoint="logout")
    async def logout() -> Any:
        form = await request.form
        check_csrf(service, form.get("csrf_token") or request.headers.get("X-CSRF-Token"))
        sign_out(service.name)
        return redirect(service.url("index"), 303)

    register_security_headers(bp, policy)  # every answer of the blueprint; HTML pages with this page policy

    @bp.after_request
    @ignores_raw_uploads  # static files only
    async def static_cache(response: Response) -> Response:
        """Fingerprinted static URLs never change; the modules app.js imports (no fingerprint) are revalidated."""
        if request.endpoint == f"{service.name}.static":
            response.headers["Cache-Control"] = (STATIC_IMMUTABLE if request.args.get("v") else "no-cache")
        return response
