"""The owner's share-link routes: create, list, show and revoke (``/api/shares``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Response, request

from upload_service import Param, Problem, Reply, documented, json_response, new_file_id

from . import inputs, schemas
from .descriptions import share_for_owner, shared_files
from .records import SHARE, Attempts, Share, now
from .store import new_token

if TYPE_CHECKING:
    from upload_service import Identity, UploadService

    from .passwords import Passwords
    from .store import LinkStore

MAX_BODY = 256 * 1024
SHARE_FIELDS = {"files", "expires_in", "password", "max_downloads", "note"}
SHARE_ID = {"share_id": Param("the share's id", {"type": "string", "pattern": "^[0-9a-z]{20}$"})}


async def new_share(service: UploadService, links: LinkStore, passwords: Passwords, identity: Identity,
                    body: Any) -> tuple[Share, list[Any]]:
    """Check the owner's JSON and every file it names, then store the share."""
    fields = inputs.json_object(body, SHARE_FIELDS)
    created = now()
    file_ids = inputs.file_ids(fields, service.settings.max_files_per_request)
    expires_at = inputs.expiry(fields, created)
    password = inputs.password(fields)
    max_downloads = inputs.positive_count(fields, "max_downloads")
    note = inputs.text(fields, "note")
    files = []
    for file_id in file_ids:
        file = await service.files.get(identity, file_id)
        if file is None:
            raise Problem(404, f"no such file: {file_id}", reason="not_found")
        if file.temporary:
            raise Problem(409, f"{file_id} is a temporary upload: persist it before sharing it", reason="temporary")
        files.append(file)
    share = Share(id=new_file_id(), owner_id=identity.id, owner_name=identity.name, owner_provider=identity.provider,
                  token=new_token(), created_at=created, expires_at=expires_at,
                  password_hash=await passwords.hash(password) if password is not None else None,
                  attempts=Attempts(), files=file_ids, max_downloads=max_downloads, note=note)
    await links.create(share)
    return share, files


def register_share_api(bp: Any, service: UploadService, links: LinkStore, passwords: Passwords) -> None:
    @bp.route("/api/shares", methods=["POST"], endpoint="create_share")
    @documented(body={"application/json": schemas.ShareCreate},
                errors={400: "a malformed field, or a file named twice", 404: "a file that is not the caller's",
                        409: "a temporary upload (persist it first)", 413: "more than MAX_FILES_PER_REQUEST files",
                        415: "the body is not application/json"},
                replies={201: Reply("the new share link", schemas.Share)})
    @service.idempotent
    async def create_share() -> Any:
        """Share some of the caller's persistent files through a link."""
        identity = await service.require_identity(request)
        share, files = await new_share(service, links, passwords, identity,
                                       await service.read_json(request, MAX_BODY))
        return json_response(share_for_owner(service, share, files), 201)

    @bp.route("/api/shares", methods=["GET"], endpoint="list_shares")
    @documented(replies={200: Reply("the caller's share links", schemas.ShareList)})
    async def list_shares() -> Any:
        """The caller's share links, newest first, with their download counts."""
        identity = await service.require_identity(request)
        shares = [share for share in await links.owned(SHARE, identity.owner_key) if isinstance(share, Share)]
        described = [share_for_owner(service, share, await shared_files(service, share)) for share in shares]
        return json_response({"shares": described})

    @bp.route("/api/shares/<share_id>", methods=["GET"], endpoint="share_info")
    @documented(path=SHARE_ID, errors={404: "no such share, or not the caller's"},
                replies={200: Reply("the share link", schemas.Share)})
    async def share_info(share_id: str) -> Any:
        """One of the caller's share links."""
        share = await links.own(Share, (await service.require_identity(request)).owner_key, share_id)
        return json_response(share_for_owner(service, share, await shared_files(service, share)))

    @bp.route("/api/shares/<share_id>", methods=["DELETE"], endpoint="revoke_share")
    @documented(path=SHARE_ID, errors={404: "no such share, or not the caller's"}, replies={204: Reply("revoked")})
    @service.idempotent
    async def revoke_share(share_id: str) -> Any:
        """Revoke a share link: it answers 404 from now on, like a link that never existed."""
        share = await links.own(Share, (await service.require_identity(request)).owner_key, share_id)
        await links.remove(share)
        return Response(b"", 204)

