"""Upload routes: the original base64 JSON API, streamed multipart and raw PUT (persisting: ``persist.py``)."""

from __future__ import annotations

import binascii
from typing import TYPE_CHECKING, Any

import pybase64
from quart import Blueprint, Request, Response, redirect, request
from werkzeug.routing import PathConverter

from ..auth import CSRF_FIELD, check_csrf, needs_csrf, require_identity
from ..body import body_chunks, check_declared_length, read_all
from ..digests import ExpectedDigests
from ..errors import Problem
from ..filenames import content_type_for, safe_filename
from ..json_body import MAX_JSON_DEPTH, parse_json
from ..multipart import MAX_FORM_FIELDS
from ..responses import describe_file as describe, json_response
from ..uploads import UploadBatch, check_file_count
from . import schemas
from .openapi import Param, Reply, documented

if TYPE_CHECKING:
    from quart.blueprints import BlueprintSetupState

    from ..service import UploadService

UPLOAD_BODIES = {"application/json": schemas.Base64Upload, "multipart/form-data": schemas.MultipartUpload}
UPLOAD_ERRORS = {
    400: "malformed body (bad JSON or base64, JSON nested deeper than 64 levels, no filename, no file) or the client "
         "disconnected; nothing is stored",
    408: "no data arrived for UPLOAD_IDLE_TIMEOUT seconds, or the body came slower than UPLOAD_MIN_RATE",
    413: "a file is over MAX_UPLOAD_SIZE (the JSON body over MAX_JSON_UPLOAD_SIZE, the files over "
         f"MAX_FILES_PER_REQUEST, a form's other fields over {MAX_FORM_FIELDS}), or the caller's quota "
         "(USER_QUOTA_BYTES, USER_QUOTA_FILES) has no room for it (``quota``, ``used``, ``limit``); nothing is stored",
    415: "the body is neither application/json nor multipart/form-data, or a file's content (sniffed from its "
         "bytes) is not an allowed type; nothing is stored",
    422: "a plugin refused the upload",
    429: "the caller already has MAX_CONCURRENT_UPLOADS uploads in progress, or is over a rate limit (Retry-After)",
    500: "the storage failed mid-write; nothing is stored",
    504: "the storage did not answer in time; nothing is stored",
    507: "the storage is full; nothing is stored",
}


BASE64_SLICE = 4 * 1024 * 1024  # characters per decoded slice; a multiple of 4


def _base64_text(content: object, index: int) -> str:
    """The base64 text of an item (checked as it is decoded)."""
    if not isinstance(content, str):
        raise Problem(400, f"item {index}: 'content' must be a base64 string", reason="bad_base64")
    return content


def _has_line_breaks(text: str) -> bool:
    """Plain ``base64`` wraps at 76 characters (four memchr-speed scans; no copy when there are none)."""
    return any(space in text for space in ("\n", "\r", " ", "\t"))


def _without_line_breaks(text: str) -> str:
    return "".join(text.split())


def _decoded_size(text: str, index: int) -> int:
    if len(text) % 4:
        raise Problem(400, f"item {index}: 'content' is not valid base64", reason="bad_base64")
    return len(text) // 4 * 3 - len(text[-2:]) + len(text[-2:].rstrip("="))


def _decode_slice(text: str, start: int) -> bytes:
    piece = text[start:start + BASE64_SLICE]
    if start + BASE64_SLICE < len(text) and piece.endswith("="):  # padding only at the very end
        raise binascii.Error("padding before the end")
    return pybase64.b64decode(piece, validate=True)


async def _base64_chunks(text: str, index: int):
    """Decode slice by slice (SIMD base64), so storage hashes and writes one slice while the next is decoded."""
    for start in range(0, len(text), BASE64_SLICE):
        try:
            yield _decode_slice(text, start)
        except (binascii.Error, ValueError):
            raise Problem(400, f"item {index}: 'content' is not valid base64", reason="bad_base64") from None


async def _json_upload(service: UploadService, batch: UploadBatch) -> None:
    """The original API: ``[{"filename": ..., "content": "<base64>"}]``, decoded one item at a time."""
    limit = service.settings.max_json_upload_size
    # one object per file and the list around them (a filename's own brackets are counted too: room for those)
    containers = 2 * service.settings.max_files_per_request + MAX_JSON_DEPTH
    items = parse_json(await read_all(request, limit, service.settings.upload_idle_timeout, what="JSON body"),
                       max_containers=containers)
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise Problem(400, 'expected a non-empty list of {"filename": ..., "content": <base64>}', reason="bad_json")
    check_file_count(len(items), service.settings.max_files_per_request)  # before any of them is stored
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
            raise Problem(400, f"item {index}: a 'filename' string is required", reason="bad_filename")
        if not isinstance(item.get("content_type"), str | None):
            raise Problem(400, f"item {index}: 'content_type' must be a string", reason="bad_json")
        safe_filename(item["filename"])
    for index, item in enumerate(items):
        text = _base64_text(item.get("content"), index)
        if _has_line_breaks(text):
            text = _without_line_breaks(text)
        item["content"] = None
        filename = safe_filename(item["filename"])
        info = batch.info(filename, content_type_for(item.get("content_type"), filename), _decoded_size(text, index))
        await batch.add(info, _base64_chunks(text, index))
        del text


async def _multipart_upload(service: UploadService, batch: UploadBatch, csrf_pending: bool) -> bool:
    """Every file part goes to storage as it arrives; returns whether the form asked for a redirect."""
    wants_redirect = False
    async for part in service.multipart(request):
        if part.filename is None:
            value = await part.text()
            if part.name == CSRF_FIELD and csrf_pending:
                check_csrf(service, value)
                csrf_pending = False
            wants_redirect = wants_redirect or (part.name == "redirect" and value == "1")
            continue
        if csrf_pending:
            check_csrf(service, request.headers.get("X-CSRF-Token"))
            csrf_pending = False
        if part.filename == "":  # a browser's empty file control
            continue
        filename = safe_filename(part.filename)
        info = batch.info(filename, content_type_for(part.content_type, filename), None)
        await batch.add(info, part.chunks())
    if csrf_pending:
        check_csrf(service, request.headers.get("X-CSRF-Token"))
    return wants_redirect


class FilenameConverter(PathConverter):
    """Werkzeug's ``path`` without its one gap: ``.`` stops at a newline, so a name holding ``%0A`` fell through
    to the ``/api/files/<file_id>`` routes and got 405. Any name reaches the raw upload (and ``safe_filename``)."""

    regex = "[^/](?s:.)*?"


def add_filename_converter(state: BlueprintSetupState) -> None:
    state.app.url_map.converters.setdefault("upload_filename", FilenameConverter)


def register_upload_routes(bp: Blueprint, service: UploadService) -> None:
    bp.record_once(add_filename_converter)

    async def upload(temporary: bool, path: str) -> Any:
        identity = await require_identity(service, request, csrf_later=True)
        content_type = (request.mimetype or "").lower()
        if content_type not in ("application/json", "multipart/form-data"):
            if needs_csrf(request):
                check_csrf(service, request.headers.get("X-CSRF-Token"))
            raise Problem(415, "send application/json (base64 items) or multipart/form-data", reason="unsupported_type")
        wants_redirect = False
        async with UploadBatch(service, identity, temporary=temporary, path=path) as batch:
            if content_type == "application/json":
                if needs_csrf(request):
                    check_csrf(service, request.headers.get("X-CSRF-Token"))
                await _json_upload(service, batch)
            else:
                wants_redirect = await _multipart_upload(service, batch, needs_csrf(request))
            if batch.staged_count == 0:
                raise Problem(400, "the request holds no file", reason="no_file")
            files = await batch.commit()
        if wants_redirect:
            return redirect(service.url("index"), 303)
        return json_response({"files": [describe(service, file) for file in files]}, 201)

    @bp.route("/api/upload", methods=["PUT", "POST"], endpoint="upload")
    @documented(body=UPLOAD_BODIES, errors=UPLOAD_ERRORS, replies={
        201: Reply("the stored files, all or none", schemas.FileList),
        303: Reply("a browser form with redirect=1: back to the UI")})
    @service.idempotent
    async def upload_persistent() -> Any:
        """Store files persistently (base64 JSON list or multipart/form-data)."""
        return await upload(False, "upload")

    @bp.route("/api/upload_temporary", methods=["PUT", "POST"], endpoint="upload_temporary")
    @documented(body=UPLOAD_BODIES, errors=UPLOAD_ERRORS, replies={
        201: Reply("the stored files, each with its token and expires_at", schemas.FileList),
        303: Reply("a browser form with redirect=1: back to the UI")})
    @service.idempotent
    async def upload_temporary() -> Any:
        """Store files temporarily; each answer carries a token for ``/api/persist``."""
        return await upload(True, "upload_temporary")

    @bp.route("/api/files/<upload_filename:filename>", methods=["PUT"], endpoint="upload_raw")
    @documented(
        body={"application/octet-stream": {"type": "string", "format": "binary"}},
        path={"filename": "the name to store the file under (display only; reduced to a safe basename)"},
        headers={"Content-Digest": Param("sha-256=:<base64>: of the body; a mismatch stores nothing"),
                 "Digest": Param("the older form, SHA-256=<base64>"),
                 "Content-MD5": Param("base64 MD5 of the body; a mismatch stores nothing")},
        query={"temporary": ("string", "1 or true: a temporary upload, with a token")},
        errors={**UPLOAD_ERRORS, 400: "a bad filename, digest header or length; nothing is stored",
                415: "the content (sniffed from its bytes, whatever Content-Type says) is not an allowed type"},
        replies={201: Reply("the stored file", schemas.File, headers={"Location": "the file's content URL"})})
    @service.idempotent
    async def upload_raw(filename: str) -> Any:
        """Stream the raw request body into one file named ``filename``."""
        return await store_raw(service, request, filename)


async def store_raw(service: UploadService, request: Request, filename: str) -> Response:
    """The raw upload's work and answer, for its route and for the lane below Quart (``raw_lane``)."""
    identity = await require_identity(service, request)
    check_declared_length(request, service.settings.max_upload_size)
    name = safe_filename(filename)
    temporary = request.args.get("temporary", "").lower() in ("1", "true", "yes")
    digests = ExpectedDigests.from_headers(request.headers)
    async with UploadBatch(service, identity, temporary=temporary, path="raw") as batch:
        info = batch.info(name, content_type_for(request.headers.get("Content-Type"), name), request.content_length)
        await batch.add(info, body_chunks(request, service.settings.upload_idle_timeout), digests)
        (file,) = await batch.commit()
    described = describe(service, file)
    return json_response(described, 201, {"Location": described["url"]})
