"""The public side of a share link: the page (HTML, or JSON for scripts), the password form, each file's bytes,
and all of them as one zip.

Only a download counts against ``max_downloads``: a response that starts at byte 0 (a Range request from the
middle, a HEAD, a 304 and the page itself never count, so link previews and resumed downloads use nothing up).
The count is taken under the link's lock before the first byte goes out, so two instances never let one
download more through than the limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response, render_template, request

from upload_service import Param, Problem, Reply, documented, json_response

from . import schemas
from .descriptions import owner_identity, share_for_visitor, shared_files
from .records import Share
from .visits import not_found, problem_page, refuse_if_closed, wants_json
from .zipping import zip_name, zipped

if TYPE_CHECKING:
    from upload_service import StoredFile, UploadService

    from .store import LinkStore
    from .visits import Visits


TOKEN = {"token": Param("the link's token", {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,128}$"})}
GONE = {404: "no such link, or revoked", 410: "expired, or the download limit is reached"}
BYTES = {"type": "string", "format": "binary"}


def register_share_pages(bp: Any, service: UploadService, links: LinkStore, visits: Visits) -> None:
    downloads = service.counter("share_downloads", "Downloads through share links", ("kind",))

    async def take_download(share: Share, files: list[StoredFile], kind: str) -> None:
        """Count one download, or refuse with 410 when the limit was reached meanwhile (on any instance)."""
        def count(current: Share) -> None:
            refuse_if_closed(current)
            current.downloads += 1
        try:
            counted, _ = await links.change(share, count)
        except LookupError:
            raise not_found() from None
        downloads.labels(kind).inc()
        service.notify(service.hook.share_downloaded, share=_summary(counted), files=files)

    @bp.route("/s/<token>", methods=["GET", "HEAD"], endpoint="share_page")
    @documented(public=True, path=TOKEN, errors=GONE | {401: "the link has a password and this client has not "
                                                               "unlocked it"},
                replies={200: Reply("the shared files (an HTML page unless Accept prefers JSON)",
                                    schemas.VisitorShare)})
    async def share_page(token: str) -> Any:
        """The files of a share link: names, sizes, download links (no account needed)."""
        try:
            share = await visits.open(token, Share)
        except Problem as problem:
            if problem.status == 401 and not wants_json():
                return await _password_form(problem)
            return await problem_page(problem)
        files = await shared_files(service, share)
        if wants_json():
            return json_response(share_for_visitor(service, share, files))
        return await render_template("upload_service/share.html", share=share, files=files,
                                     zip_url=service.url("share_zip", token=token))

    @bp.route("/s/<token>", methods=["POST"], endpoint="share_unlock")
    @documented(public=True, path=TOKEN, body={"application/json": schemas.Password},
                errors=GONE | {403: "wrong password", 415: "neither JSON nor a form",
                               429: "too many wrong passwords (Retry-After)"},
                replies={204: Reply("unlocked: the cookie for this link is set"),
                         303: Reply("a browser's form: unlocked, back to the page")})
    async def share_unlock(token: str) -> Any:
        """The password of a protected share link: right gives a cookie for this link only."""
        try:
            return await visits.unlock(token, Share, "share_page")
        except Problem as problem:
            if problem.status in (401, 403, 429) and not wants_json():
                return await _password_form(problem)
            return await problem_page(problem)

    @bp.route("/s/<token>/files/<file_id>", methods=["GET", "HEAD"], endpoint="share_file")
    @documented(public=True, path={**TOKEN, "file_id": Param("a shared file's id")},
                errors=GONE | {401: "locked by a password", 416: "a range outside the file"},
                replies={200: Reply("the bytes; counts one download", BYTES, "*/*"),
                         206: Reply("the requested Range (counts when it starts at byte 0)", BYTES, "*/*"),
                         304: Reply("If-None-Match matched the ETag")})
    async def share_file(token: str, file_id: str) -> Any:
        """One file of the share, as its owner would download it (Range, ETag, attachment, nosniff)."""
        share = await visits.open(token, Share)
        file = None
        if file_id in share.files:
            file = await service.files.get(owner_identity(share), file_id)
        if file is None or file.temporary:
            raise Problem(404, "no such file in this share", reason="not_found")
        return await service.download(file, on_start=lambda: take_download(share, [file], "file"))

    @bp.route("/s/<token>/files/<file_id>/preview", methods=["GET"], endpoint="share_preview")
    @documented(public=True, path={**TOKEN, "file_id": Param("a shared file's id")},
                errors=GONE | {401: "locked by a password", 404: "no such file in the share, or no preview"},
                replies={200: Reply("a small picture of the file (never counts as a download)", BYTES, "image/*")})
    async def share_preview(token: str, file_id: str) -> Any:
        """A thumbnail of a shared file, where a plugin made one (the images plugin does for images)."""
        share = await visits.open(token, Share)
        file = await service.files.get(owner_identity(share), file_id) if file_id in share.files else None
        preview = await service.preview(file) if file is not None and not file.temporary else None
        if preview is None:
            raise Problem(404, "no preview of this file", reason="not_found")
        data, content_type = preview
        return Response(data, 200, {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
                                    "Content-Security-Policy": "default-src 'none'"}, content_type=content_type)

    @bp.route("/s/<token>/zip", methods=["GET", "HEAD"], endpoint="share_zip")
    @documented(public=True, path=TOKEN, errors=GONE | {401: "locked by a password"},
                replies={200: Reply("every file of the share as one zip; counts one download", BYTES,
                                    "application/zip")})
    async def share_zip(token: str) -> Any:
        """Every file of the share in one zip, streamed as it is made (no temporary file); one download."""
        share = await visits.open(token, Share)
        files = await shared_files(service, share)
        if not files:
            raise Problem(404, "this share has no files left", reason="not_found")
        headers = {"Content-Disposition": f'attachment; filename="{zip_name(share)}"',
                   "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
        if request.method == "HEAD":
            return Response(b"", 200, headers, content_type="application/zip")
        await take_download(share, files, "zip")
        response = Response(zipped(service, files), 200, headers, content_type="application/zip")
        response.timeout = None  # a large zip may take longer than RESPONSE_TIMEOUT
        return response

    async def _password_form(problem: Problem) -> Any:
        body = await render_template("upload_service/link_password.html", problem=problem)
        return Response(body, problem.status, problem.headers, content_type="text/html")


def _summary(share: Share) -> dict[str, Any]:
    """What notification hooks learn of the share (no token: hooks forward to other systems)."""
    return {"id": share.id, "owner": share.owner_id, "downloads": share.downloads,
            "max_downloads": share.max_downloads}
