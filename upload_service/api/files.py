"""File routes: list, describe, download (Range, ETag) and delete, each limited to the caller's own files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, request

from ..attempts import current_attempt
from ..auth import require_identity
from ..errors import Problem
from ..files import FILE_ID_PATTERN, StoredFile
from ..responses import describe_file as describe, json_response
from . import schemas
from .downloads import serve_file
from .openapi import Param, Reply, documented

if TYPE_CHECKING:
    from ..identity import Identity
    from ..service import UploadService

DEFAULT_PAGE, MAX_PAGE = 50, 1000
FILE_ID = {"file_id": Param("the file's id", {"type": "string", "pattern": FILE_ID_PATTERN})}
BYTES, ANY_TYPE = {"type": "string", "format": "binary"}, "*/*"  # a download has the file's own type, if inert
SERVED_AS = ("the bytes (HEAD: headers only), as the file's own type when that is inert (an image, audio, video, "
             "PDF, plain text, an archive), else as application/octet-stream")
DISPOSITION = "attachment with the safe name (inline only for a PNG, JPEG, GIF or WebP whose bytes say so)"
CONDITIONS = {
    "Range": Param("one byte range, e.g. bytes=0-99 (several ranges are answered with the whole file)"),
    "If-Range": Param("the ETag the Range is valid for; any other ETag gets the whole file"),
    "If-None-Match": Param("ETags (or *) the client has: 304 when the file's ETag is among them"),
}


async def _own_file(service: UploadService, identity: Identity, file_id: str) -> StoredFile:
    file = await service.files.get(identity, file_id)
    if file is None:
        raise Problem(404, "no such file", reason="not_found")
    return file


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise Problem(400, f"limit must be a whole number from 1 to {MAX_PAGE}", reason="bad_limit")
    return int(raw)


def register_file_routes(bp: Blueprint, service: UploadService) -> None:
    @bp.route("/api/files", methods=["GET"], endpoint="list_files")
    @documented(
        query={"limit": Param(f"page size (default {DEFAULT_PAGE})", {"type": "integer", "minimum": 1,
                                                                    "maximum": MAX_PAGE}),
               "cursor": ("string", "next_cursor of the previous page"),
               "temporary": ("string", "1 or true: list temporary uploads instead of persistent files")},
        errors={400: "a bad limit or cursor"},
        replies={200: Reply("one page of the caller's files", schemas.FilePage)})
    async def list_files() -> Any:
        """The caller's files, newest first: ``limit``, ``cursor``, ``temporary=1``."""
        identity = await require_identity(service, request)
        temporary = request.args.get("temporary", "").lower() in ("1", "true", "yes")
        files, cursor = await service.files.page(identity, temporary=temporary,
                                                 limit=_page_size(request.args.get("limit")),
                                                 cursor=request.args.get("cursor"))
        return json_response({"files": [describe(service, file) for file in files], "next_cursor": cursor})

    @bp.route("/api/files/<file_id>", methods=["GET"], endpoint="file_info")
    @documented(path=FILE_ID, errors={404: "no such file, or not the caller's"},
                replies={200: Reply("the file's description", schemas.File)})
    async def file_info(file_id: str) -> Any:
        """One of the caller's files."""
        identity = await require_identity(service, request)
        return json_response(describe(service, await _own_file(service, identity, file_id)))

    @bp.route("/api/files/<file_id>/content", methods=["GET", "HEAD"], endpoint="file_content")
    @documented(path=FILE_ID, headers=CONDITIONS,
                errors={404: "no such file, or not the caller's", 416: "a range outside the file"},
                replies={200: Reply(SERVED_AS, BYTES, ANY_TYPE,
                                    {"ETag": "the sha256 in quotes", "Content-Disposition": DISPOSITION}),
                         206: Reply("the requested Range", BYTES, ANY_TYPE, {"Content-Range": "bytes start-end/size"}),
                         304: Reply("If-None-Match matched the ETag")})
    async def file_content(file_id: str) -> Any:
        """The bytes, with Range, ETag/If-None-Match, and as an attachment unless a real raster image."""
        identity = await require_identity(service, request)
        file = await _own_file(service, identity, file_id)
        return await serve_file(service, file)

    @bp.route("/api/files/<file_id>", methods=["DELETE"], endpoint="delete_file")
    @documented(path=FILE_ID, replies={204: Reply("deleted")},
                errors={404: "no such file, or not the caller's",
                        503: "the file is being changed by other work (or by an instance that died, whose work is "
                             "taken over once its lease runs out); Retry-After says when to try again"})
    @service.idempotent
    async def delete_file(file_id: str) -> Any:
        """Delete one of the caller's files."""
        try:
            await delete_own_file(service, await require_identity(service, request), file_id)
        except Problem as problem:
            attempt = current_attempt()
            if problem.status != 404 or attempt is None or not attempt.retrying:
                raise
            # the retry of a keyed delete whose instance died before answering: the file went, as asked
        return Response(b"", 204)


async def delete_own_file(service: UploadService, identity: Identity, file_id: str) -> StoredFile:
    """Delete one of the caller's files and notify plugins (404 when unknown or someone else's)."""
    file = await _own_file(service, identity, file_id)
    if not await service.files.delete(file):
        raise Problem(404, "no such file", reason="not_found")
    await service.notify_deleted(file)
    return file
