"""The owner's file-request routes: create, list, show and revoke (``/api/requests``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response, request

from upload_service import Param, Reply, documented, json_response, new_file_id

from . import inputs, schemas
from .descriptions import request_for_owner
from .records import REQUEST, Attempts, FileRequest, now
from .store import new_token

if TYPE_CHECKING:
    from upload_service import Identity, UploadService

    from .passwords import Passwords
    from .store import LinkStore

MAX_BODY = 64 * 1024
REQUEST_FIELDS = {"title", "expires_in", "password", "max_files", "max_file_size"}
REQUEST_ID = {"request_id": Param("the request's id", {"type": "string", "pattern": "^[0-9a-z]{20}$"})}


async def new_request(service: UploadService, links: LinkStore, passwords: Passwords, identity: Identity,
                      body: Any) -> FileRequest:
    fields = inputs.json_object(body, REQUEST_FIELDS)
    created = now()
    title = inputs.text(fields, "title", required=True)
    assert title is not None
    expires_at = inputs.expiry(fields, created)
    password = inputs.password(fields)
    max_files = inputs.positive_count(fields, "max_files")
    max_file_size = inputs.size(fields, "max_file_size", service.settings.max_upload_size)
    file_request = FileRequest(
        id=new_file_id(), owner_id=identity.id, owner_name=identity.name, owner_provider=identity.provider,
        token=new_token(), created_at=created, expires_at=expires_at,
        password_hash=await passwords.hash(password) if password is not None else None, attempts=Attempts(),
        title=title, max_files=max_files, max_file_size=max_file_size)
    await links.create(file_request)
    return file_request


def register_request_api(bp: Any, service: UploadService, links: LinkStore, passwords: Passwords) -> None:
    @bp.route("/api/requests", methods=["POST"], endpoint="create_request")
    @documented(body={"application/json": schemas.RequestCreate},
                errors={400: "a malformed field", 415: "the body is not application/json"},
                replies={201: Reply("the new file request", schemas.FileRequest)})
    @service.idempotent
    async def create_request() -> Any:
        """Make an upload-only link: anyone holding it may add files to the caller's files."""
        identity = await service.require_identity(request)
        file_request = await new_request(service, links, passwords, identity,
                                         await service.read_json(request, MAX_BODY))
        return json_response(request_for_owner(service, file_request), 201)

    @bp.route("/api/requests", methods=["GET"], endpoint="list_requests")
    @documented(replies={200: Reply("the caller's file requests", schemas.RequestList)})
    async def list_requests() -> Any:
        """The caller's file requests, newest first, with the number of files each received."""
        identity = await service.require_identity(request)
        owned = await links.owned(REQUEST, identity.owner_key)
        return json_response({"requests": [request_for_owner(service, item) for item in owned
                                           if isinstance(item, FileRequest)]})

    @bp.route("/api/requests/<request_id>", methods=["GET"], endpoint="request_info")
    @documented(path=REQUEST_ID, errors={404: "no such request, or not the caller's"},
                replies={200: Reply("the file request", schemas.FileRequest)})
    async def request_info(request_id: str) -> Any:
        """One of the caller's file requests."""
        identity = await service.require_identity(request)
        return json_response(request_for_owner(service, await links.own(FileRequest, identity.owner_key, request_id)))

    @bp.route("/api/requests/<request_id>", methods=["DELETE"], endpoint="revoke_request")
    @documented(path=REQUEST_ID, errors={404: "no such request, or not the caller's"},
                replies={204: Reply("closed; the files it brought stay")})
    @service.idempotent
    async def revoke_request(request_id: str) -> Any:
        """Close a file request: its link answers 404 from now on; the files it brought stay."""
        identity = await service.require_identity(request)
        await links.remove(await links.own(FileRequest, identity.owner_key, request_id))
        return Response(b"", 204)
