"""Browser pages: the sign-in page, the upload page with the caller's files, and sign-out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, redirect, render_template, request

from .auth import check_csrf
from .sessions import csrf_token, sign_out

if TYPE_CHECKING:
    from .service import UploadService


def register_ui_routes(bp: Blueprint, service: UploadService) -> None:
    async def page(template: str, **context: Any) -> str:
        return await render_template(template, service=service, csrf_token=csrf_token(service.name),
                                     url=service.url, **context)

    @bp.route("/", endpoint="index")
    async def index() -> Any:
        identity = await service.auth.identify(request)
        if identity is None:
            return await page("upload_service/signin.html", providers=service.auth.with_login())
        files, cursor = await service.files.page(identity, temporary=False, limit=50,
                                                 cursor=request.args.get("cursor"))
        return await page("upload_service/index.html", identity=identity, files=files, next_cursor=cursor)

    @bp.route("/logout", methods=["GET"], endpoint="logout_page")
    async def logout_page() -> Any:
        return await page("upload_service/logout.html")

    @bp.route("/logout", methods=["POST"], endpoint="logout")
    async def logout() -> Any:
        form = await request.form
        check_csrf(service, form.get("csrf_token") or request.headers.get("X-CSRF-Token"))
        sign_out(service.name)
        return redirect(service.url("index"), 303)
