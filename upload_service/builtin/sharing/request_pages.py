"""The public side of a file request: the upload page, and uploads into the owner's files (raw PUT, multipart).

The uploader never sees an id, a URL or anything of the owner's files: the answer names only what they sent
(name, size, sha256). Each file is one of the owner's persistent files, through the same pipeline as any upload
(the owner's quota, ``MAX_UPLOAD_SIZE``, content-type policy, every validate and process hook), with
``metadata.request`` and the uploader's name and note when given. Each file takes one of ``max_files``
before its bytes are read (``slots``): over it, 409.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from quart import Response, render_template, request
from werkzeug.routing import BuildError

from upload_service import Param, Problem, Reply, content_type_for, documented, json_response, safe_filename, too_large

from . import schemas
from .descriptions import owner_identity, request_for_visitor
from .records import FileRequest
from .share_pages import BYTES, TOKEN
from .slots import give_back, open_for_upload, take_slot
from .visits import problem_page, wants_json

if TYPE_CHECKING:
    from upload_service import StoredFile, UploadBatch, UploadService

    from .store import LinkStore
    from .visits import Visits

MAX_NAME, MAX_NOTE = 200, 2000
CLOSED = {404: "no such link, or closed by its owner", 410: "expired, or all its files arrived"}
UPLOAD_ERRORS = CLOSED | {
    400: "malformed body, no file, a bad filename", 401: "locked by a password",
    408: "the body stalled or came too slowly", 409: "the request has all the files it asked for",
    413: "a file over the request's max_file_size or MAX_UPLOAD_SIZE, or the owner's quota is full",
    415: "a file type the service does not accept", 422: "a plugin refused the file", 507: "the storage is full"}


def clean_text(value: str | None, limit: int, *, encoded: bool = False) -> str | None:
    """An uploader's name or note as display text: no control or format characters, trimmed, cut to ``limit``.

    ``encoded``: a header value, percent-decoded first (headers carry only Latin-1, so the upload page sends
    UTF-8 percent-encoded; a plain value without escapes passes unchanged)."""
    if value is None:
        return None
    if encoded:
        value = unquote(value[: limit * 12])
    kept = "".join(char for char in value if char in "\n\t" or unicodedata.category(char)[0] != "C")
    return kept.strip()[:limit] or None


def received(file: StoredFile) -> dict[str, Any]:
    return {"filename": file.filename, "size": file.size, "sha256": file.sha256}


def size_limit(service: UploadService, file_request: FileRequest) -> int:
    """The largest file the request takes: ``MAX_UPLOAD_SIZE``, or its own ``max_file_size``."""
    limit = service.settings.max_upload_size
    return min(limit, file_request.max_file_size) if file_request.max_file_size else limit


def file_metadata(file_request: FileRequest, name: str | None, note: str | None) -> dict[str, Any]:
    """What each file a request brings carries: the request, and who sent it with their note when given."""
    metadata: dict[str, Any] = {"request": file_request.id}
    if name:
        metadata["uploaded_by"] = name
    if note:
        metadata["uploader_note"] = note
    return metadata


def uploader_headers(file_request: FileRequest) -> dict[str, Any]:
    """``file_metadata`` from the ``X-Uploader-Name`` and ``X-Uploader-Note`` headers (raw PUT and tus)."""
    return file_metadata(file_request, clean_text(request.headers.get("X-Uploader-Name"), MAX_NAME, encoded=True),
                         clean_text(request.headers.get("X-Uploader-Note"), MAX_NOTE, encoded=True))


def notify_received(service: UploadService, file_request: FileRequest, files: list[StoredFile]) -> None:
    """Count the files on /metrics and tell plugins (``file_request_received``), without the link's token."""
    summary = {"id": file_request.id, "owner": file_request.owner_id, "title": file_request.title,
               "max_files": file_request.max_files}
    service.counter("request_files", "Files received through file requests").inc(len(files))
    for file in files:
        service.notify(service.hook.file_request_received, file_request=summary, file=file)


def register_request_pages(bp: Any, service: UploadService, links: LinkStore, visits: Visits) -> None:
    service.stream_bodies("/r/")  # uploads under /r/ stream like those under /api/

    def batch(file_request: FileRequest, metadata: dict[str, Any]) -> UploadBatch:
        return service.batch(owner_identity(file_request), temporary=False, path="request", metadata=metadata)

    async def upload_key_scope(token: str, **_: str) -> str | None:
        """A visitor's ``Idempotency-Key`` belongs to the link; a password (a new cookie each time) takes none."""
        if request.method == "POST" and (request.mimetype or "") != "multipart/form-data":
            return None
        return await visits.key_scope(token, FileRequest)

    @bp.route("/r/<token>", methods=["GET", "HEAD"], endpoint="request_page")
    @documented(public=True, path=TOKEN, errors=CLOSED | {401: "locked by a password"},
                replies={200: Reply("the upload page (HTML unless Accept prefers JSON)", schemas.VisitorRequest)})
    async def request_page(token: str) -> Any:
        """The upload page of a file request (no account needed)."""
        try:
            file_request = await visits.open(token, FileRequest)
        except Problem as problem:
            if problem.status == 401 and not wants_json():
                body = await render_template("upload_service/link_password.html", problem=problem)
                return Response(body, 401, content_type="text/html")
            return await problem_page(problem)
        if wants_json():
            return json_response(request_for_visitor(file_request))
        try:  # tus for large files, unless the tus plugin is off or the bundle has no tus-js-client
            tus_url = service.url("request_tus_create", token=token)
        except BuildError:
            tus_url = None
        return await render_template("upload_service/request.html", file_request=file_request,
                                     max_size=size_limit(service, file_request), tus_url=tus_url,
                                     tus_threshold=service.settings.ui_tus_threshold)

    @bp.route("/r/<token>", methods=["POST"], endpoint="request_post")
    @documented(public=True, path=TOKEN,
                body={"multipart/form-data": schemas.RequestUpload, "application/json": schemas.Password},
                errors=UPLOAD_ERRORS | {403: "wrong password", 429: "too many wrong passwords (Retry-After)"},
                replies={201: Reply("the files received, all or none", schemas.ReceivedList),
                         204: Reply("a JSON password: unlocked, the cookie for this link is set"),
                         303: Reply("a browser's password form: unlocked, back to the page")})
    @service.idempotent(key_scope=upload_key_scope)
    async def request_post(token: str) -> Any:
        """A multipart upload of files (with optional ``name`` and ``note`` fields), or the link's password.
        ``Idempotency-Key`` is the link's (a password takes none)."""
        if (request.mimetype or "") != "multipart/form-data":
            try:
                return await visits.unlock(token, FileRequest, "request_page")
            except Problem as problem:
                if problem.status in (401, 403, 429) and not wants_json():
                    body = await render_template("upload_service/link_password.html", problem=problem)
                    return Response(body, problem.status, problem.headers, content_type="text/html")
                raise
        attempt = service.keyed_attempt()
        file_request = await open_for_upload(visits, token, attempt)
        limit = size_limit(service, file_request)
        async with batch(file_request, file_metadata(file_request, None, None)) as uploads:
            slots = 0
            try:
                async for part in service.multipart(request):
                    if part.filename is None:
                        if part.name in ("name", "note"):
                            cleaned = clean_text(await part.text(), MAX_NAME if part.name == "name" else MAX_NOTE)
                            if cleaned:
                                uploads.metadata["uploaded_by" if part.name == "name" else "uploader_note"] = cleaned
                        continue
                    if part.filename == "":
                        continue
                    filename = safe_filename(part.filename)
                    await take_slot(service, links, file_request, attempt, slots)
                    slots += 1
                    info = uploads.info(filename, content_type_for(part.content_type, filename), None)
                    await uploads.add(info, part.chunks(), max_size=limit)
                if uploads.staged_count == 0:
                    raise Problem(400, "the request holds no file", reason="no_file")
                files = await uploads.commit()
            except BaseException:
                await give_back(links, file_request, slots, attempt)
                raise
        notify_received(service, file_request, files)
        if wants_json():
            response = json_response({"files": [received(file) for file in files]}, 201)
        else:
            body = await render_template("upload_service/request_received.html", file_request=file_request,
                                         files=files)
            response = Response(body, 201, content_type="text/html")
        response.headers["Vary"] = "Accept"  # a key's kept answer is replayed only to the same Accept
        return response

    @bp.route("/r/<token>/files/<upload_filename:filename>", methods=["PUT"], endpoint="request_put")
    @documented(public=True, body={"application/octet-stream": BYTES},
                path={**TOKEN, "filename": Param("the file's name (display only; reduced to a safe basename)")},
                headers={"X-Uploader-Name": Param("who sends it (shown to the owner; UTF-8, percent-encoded)"),
                         "X-Uploader-Note": Param("a note for the owner (UTF-8, percent-encoded)")},
                errors=UPLOAD_ERRORS, replies={201: Reply("the file received", schemas.Received)})
    @service.idempotent(key_scope=upload_key_scope)
    async def request_put(token: str, filename: str) -> Any:
        """One file as the raw body (``X-Uploader-Name``, ``X-Uploader-Note`` optional); ``Idempotency-Key`` is
        the link's."""
        attempt = service.keyed_attempt()
        file_request = await open_for_upload(visits, token, attempt)
        limit = size_limit(service, file_request)
        if request.content_length is not None and request.content_length > limit:
            raise too_large(limit)
        name = safe_filename(filename)
        await take_slot(service, links, file_request, attempt)
        try:
            async with batch(file_request, uploader_headers(file_request)) as uploads:
                info = uploads.info(name, content_type_for(request.headers.get("Content-Type"), name),
                                    request.content_length)
                await uploads.add(info, service.request_body(request, limit))
                (file,) = await uploads.commit()
        except BaseException:
            await give_back(links, file_request, 1, attempt)
            raise
        notify_received(service, file_request, [file])
        return json_response(received(file), 201)

