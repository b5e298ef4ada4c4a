"""The HTTP side of tus: which method does what, and the headers each answer carries."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from quart import Blueprint, Request, Response, request

from upload_service import (
    Param,
    Problem,
    Reply,
    StartupError,
    StoredFile,
    TusGrant,
    documented,
    ignores_raw_uploads,
)

from .operations import TusUploads
from .protocol import (
    CHECKSUMS,
    EXPOSED_HEADERS,
    EXTENSIONS,
    OFFSET_CONTENT_TYPE,
    TUS_VERSION,
    UPLOAD_ID_PATTERN,
    check_version,
    http_date,
)
from .state import TusUpload

if TYPE_CHECKING:
    from upload_service import UploadService

Authorize = Callable[..., Awaitable[TusGrant]]  # authorize(request, **path variables) -> the grant
KeyScope = Callable[..., Awaitable[str | None]]  # key_scope(request, **path variables) -> an Idempotency-Key scope
_PATH_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")

UPLOAD_ID = {"upload_id": Param("the tus upload's id (the last segment of its Location)",
                                {"type": "string", "pattern": f"^{UPLOAD_ID_PATTERN}$"})}
OFFSET = {"type": "integer", "minimum": 0}
VERSION = {"Tus-Resumable": Param("the protocol version", {"type": "string", "enum": [TUS_VERSION]}, required=True)}
CHECKSUM = {"Upload-Checksum": Param(f"'<algorithm> <base64 digest>' of this body ({', '.join(CHECKSUMS)})")}
CREATE_HEADERS = {
    **VERSION, **CHECKSUM,
    "Upload-Length": Param("the upload's size in bytes", OFFSET),
    "Upload-Defer-Length": Param("1: the size is sent later", {"type": "string", "enum": ["1"]}),
    "Upload-Metadata": Param("comma-separated 'key base64value' pairs: filename, filetype, temporary"),
    "Upload-Concat": Param("'partial', or 'final;<url> <url>...' naming finished partial uploads"),
}
PATCH_HEADERS = {
    **VERSION, **CHECKSUM,
    "Upload-Offset": Param("where this chunk starts: the upload's current offset", OFFSET, required=True),
    "Upload-Length": Param("creation-defer-length: the size, once", OFFSET),
}
OVERRIDE_HEADERS = {
    **PATCH_HEADERS,
    "Upload-Offset": Param("as for PATCH (with X-HTTP-Method-Override: PATCH)", OFFSET),
    "X-HTTP-Method-Override": Param("the method meant", {"type": "string", "enum": ["PATCH", "DELETE"]},
                                    required=True),
}
CHUNK = {OFFSET_CONTENT_TYPE: {"type": "string", "format": "binary"}}
COMMON = {412: "no Tus-Resumable: 1.0.0 header", 423: "another request holds this upload; retry shortly"}
AUTHORIZE_ERRORS = {401: "the endpoint wants a password or credentials first", 403: "the endpoint refused",
                    404: "no such endpoint (an unknown or revoked link)", 409: "the endpoint takes no more files",
                    410: "the endpoint expired"}
FOUND = {**COMMON, 404: "no such upload, or not the caller's", 410: "the upload expired"}
PATCH_ERRORS = {**FOUND, 400: "a missing or bad Upload-Offset, Upload-Length or Upload-Checksum",
                403: "a final (concatenated) upload cannot be patched", 409: "Upload-Offset is not the upload's offset",
                413: "more bytes than the upload's length", 415: "not application/offset+octet-stream",
                460: "the chunk does not match Upload-Checksum", 507: "the storage is full"}


def _empty(status: int, headers: dict[str, str]) -> Response:
    response = Response(b"", status=status, headers=headers)
    del response.headers["Content-Type"]  # tus answers carry no body
    return response


def register_tus_routes(bp: Blueprint, service: UploadService, uploads: TusUploads) -> None:
    """Add ``/api/tus/`` (OPTIONS, POST) and ``/api/tus/<id>`` (OPTIONS, HEAD, PATCH, DELETE) to ``bp``, for
    the caller's own uploads, and tus at the paths of every ``register_tus_endpoints`` endpoint."""

    async def own(request: Request) -> TusGrant:
        return TusGrant(await service.require_identity(request))

    mount_tus(bp, service, uploads, name="tus", path="/api/tus", authorize=own, public=False)

    names = ["tus"]

    def register(name: str, path: str, authorize: Authorize, *, key_scope: KeyScope | None = None) -> None:
        if not name.isidentifier() or name in names or not path.startswith("/") or path.endswith("/"):
            raise StartupError(f"a tus endpoint needs a name of its own like 'request_tus' and a path like "
                               f"'/r/<token>/tus', not {name!r} and {path!r}")
        names.append(name)
        mount_tus(bp, service, uploads, name=name, path=path, authorize=authorize, public=True, key_scope=key_scope)

    service.call_registration(service.hook.register_tus_endpoints, register=register)
    prefixes = tuple(f"{service.name}.{name}_" for name in names)

    @bp.after_request
    @ignores_raw_uploads  # tus endpoints only
    async def tus_headers(response: Response) -> Response:
        """Every tus answer, errors included, says its protocol version and lets browsers read its headers."""
        if (request.endpoint or "").startswith(prefixes):
            response.headers.setdefault("Tus-Resumable", TUS_VERSION)
            response.headers.setdefault("Access-Control-Expose-Headers", EXPOSED_HEADERS)
        return response


def mount_tus(bp: Blueprint, service: UploadService, uploads: TusUploads, *, name: str, path: str,
              authorize: Authorize, public: bool, key_scope: KeyScope | None = None) -> None:
    """tus at ``path`` (``<path>/`` creates, ``<path>/<upload_id>`` is an upload), its endpoints named
    ``<name>_create``, ``<name>_upload``...; every request is authorized by ``authorize(request, **variables)``,
    the path's own variables. Creations take ``Idempotency-Key`` under the caller's own account, or on a public
    endpoint under the scope ``key_scope(request, **variables)`` names (none without it: a visitor has no
    account to scope a key)."""
    variables = {variable: Param("a variable of this endpoint's path") for variable in _PATH_VARIABLE.findall(path)}
    refusals = AUTHORIZE_ERRORS if public else {}  # what the endpoint's own authorize may answer
    keyed: Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]] = (
        service.idempotent if not public else (lambda view: view) if key_scope is None else
        service.idempotent(key_scope=lambda **values: key_scope(request, **values)))

    def errors(documented_errors: dict[int, str]) -> dict[int, str]:
        return {**refusals, **documented_errors}

    def upload_headers(grant: TusGrant, upload: TusUpload, file: StoredFile | None = None) -> dict[str, str]:
        headers = {"Upload-Offset": str(upload.offset)}
        file_id = file.id if file is not None else upload.file_id
        if not file_id:
            headers["Upload-Expires"] = http_date(upload.expires_at)
        else:
            headers["Upload-File-Id"] = file_id
            if upload.info["temporary"]:
                headers["Upload-Token"] = service.temporary_token(file_id, grant.identity)
        return headers

    async def identify(values: dict[str, str]) -> TusGrant:
        check_version(request.headers)
        return await authorize(request, **values)

    @bp.route(f"{path}/", methods=["OPTIONS"], endpoint=f"{name}_options", provide_automatic_options=False)
    @bp.route(f"{path}/<upload_id>", methods=["OPTIONS"], endpoint=f"{name}_upload_options",
              provide_automatic_options=False)
    @documented(public=True, path={**variables, **UPLOAD_ID},
                replies={204: Reply("Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm headers")})
    async def options(upload_id: str | None = None, **_: str) -> Response:
        """Discovery: version, extensions, size limit, checksums (open to anyone, like any OPTIONS)."""
        return _empty(204, {"Tus-Version": TUS_VERSION, "Tus-Extension": ",".join(EXTENSIONS),
                            "Tus-Max-Size": str(service.settings.max_upload_size),
                            "Tus-Checksum-Algorithm": ",".join(CHECKSUMS)})

    @bp.route(f"{path}/", methods=["POST"], endpoint=f"{name}_create")
    @documented(
        public=public, path=variables, body=CHUNK, headers=CREATE_HEADERS,
        errors=errors({**COMMON, 400: "bad Upload-Length, Upload-Defer-Length, Upload-Metadata or Upload-Concat",
                       413: "Upload-Length over MAX_UPLOAD_SIZE", 422: "a plugin refused the upload",
                       460: "creation-with-upload: the body does not match Upload-Checksum",
                       507: "the storage is full"}),
        replies={201: Reply("created", headers={"Location": "the upload's URL", "Upload-Offset": "bytes stored",
                                                "Upload-File-Id": "when complete", "Upload-Token": "when temporary"})})
    @keyed
    async def create(**values: str) -> Response:
        """creation (+ with-upload, defer-length, concatenation)."""
        grant = await identify(values)
        upload, file, took_body = await uploads.create(grant, request)
        headers = upload_headers(grant, upload, file)
        if not took_body and not upload.is_final:
            headers.pop("Upload-Offset")
        headers["Location"] = service.url(f"{name}_upload", upload_id=upload.id, **values)
        return _empty(201, headers)

    @bp.route(f"{path}/<upload_id>", methods=["HEAD"], endpoint=f"{name}_upload")
    @documented(public=public, path={**variables, **UPLOAD_ID}, headers=VERSION, errors=errors(FOUND),
                replies={200: Reply("Upload-Offset, Upload-Length or Upload-Defer-Length, Upload-Metadata, "
                                    "Upload-Concat, Upload-File-Id")})
    async def head(upload_id: str, **values: str) -> Response:
        """Where to resume. Taking the lock asks a stale PATCH to let go first, so the offset is final."""
        grant = await identify(values)
        upload, file = await uploads.current(grant, upload_id)
        headers = upload_headers(grant, upload, file)
        headers["Cache-Control"] = "no-store"
        if upload.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(upload.length)
        if upload.info.get("metadata"):
            headers["Upload-Metadata"] = upload.info["metadata"]
        if upload.is_partial:
            headers["Upload-Concat"] = "partial"
        elif upload.is_final:
            urls = " ".join(service.url(f"{name}_upload", upload_id=part, **values) for part in upload.info["parts"])
            headers["Upload-Concat"] = f"final;{urls}"
        return _empty(200, headers)

    @bp.route(f"{path}/<upload_id>", methods=["PATCH"], endpoint=f"{name}_patch")
    @documented(
        public=public, path={**variables, **UPLOAD_ID}, body=CHUNK, headers=PATCH_HEADERS,
        errors=errors(PATCH_ERRORS),
        replies={204: Reply("stored", headers={"Upload-Offset": "the new offset",
                                               "Upload-File-Id": "when complete", "Upload-Token": "when temporary"})})
    async def patch(upload_id: str, **values: str) -> Response:
        """core: append a chunk at Upload-Offset (checksum: verified before it counts)."""
        grant = await identify(values)
        upload, file = await uploads.append(grant, upload_id, request)
        return _empty(204, upload_headers(grant, upload, file))

    @bp.route(f"{path}/<upload_id>", methods=["DELETE"], endpoint=f"{name}_delete")
    @documented(public=public, path={**variables, **UPLOAD_ID}, headers=VERSION, errors=errors(FOUND),
                replies={204: Reply("terminated")})
    async def delete(upload_id: str, **values: str) -> Response:
        """termination."""
        grant = await identify(values)
        await uploads.terminate(grant, upload_id)
        return _empty(204, {})

    @bp.route(f"{path}/<upload_id>", methods=["POST"], endpoint=f"{name}_override")
    @documented(public=public, path={**variables, **UPLOAD_ID}, body=CHUNK, headers=OVERRIDE_HEADERS,
                errors=errors({**PATCH_ERRORS, 405: "no X-HTTP-Method-Override: PATCH or DELETE"}),
                replies={204: Reply("as PATCH or DELETE")})
    async def override(upload_id: str, **values: str) -> Response:
        """``X-HTTP-Method-Override: PATCH|DELETE`` for clients that can only send POST."""
        method = request.headers.get("X-HTTP-Method-Override", "").upper()
        if method == "PATCH":
            return await patch(upload_id, **values)
        if method == "DELETE":
            return await delete(upload_id, **values)
        raise Problem(405, "POST an upload URL only with X-HTTP-Method-Override: PATCH or DELETE",
                      reason="method_not_allowed")
