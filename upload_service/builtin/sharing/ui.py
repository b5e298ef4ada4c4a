"""The sharing plugin's part of the signed-in page: a Share action on each file and on a selection, and the
Shares and Requests panels (htmx fragments); the share dialog itself talks to the JSON API (``js/sharing.js``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from quart import Response, render_template, request

from upload_service import Problem

from .descriptions import request_for_owner, share_for_owner, shared_files
from .records import REQUEST, SHARE, FileRequest, Share
from .request_api import new_request

if TYPE_CHECKING:
    from upload_service import UploadService

    from .passwords import Passwords
    from .store import LinkStore

R = TypeVar("R", Share, FileRequest)
FORM_FIELDS = ("title", "expires_in", "password", "max_files", "max_file_size")


def _request_body(form: Any) -> dict[str, Any]:
    """The request form as the JSON API takes it: empty fields left out, the file count as a number."""
    body: dict[str, Any] = {name: form.get(name) for name in FORM_FIELDS if form.get(name)}
    if "max_files" in body:
        if not str(body["max_files"]).isdigit():
            raise Problem(400, "max_files: a whole number", reason="bad_json", field="max_files")
        body["max_files"] = int(body["max_files"])
    return body


def register_sharing_ui(bp: Any, service: UploadService, links: LinkStore, passwords: Passwords) -> None:
    service.add_ui_part("file_action", "upload_service/sharing_file_action.html")
    service.add_ui_part("toolbar", "upload_service/sharing_toolbar.html")
    service.add_ui_part("panel", "upload_service/sharing_panels.html")
    service.add_ui_part("script", "js/sharing.js")

    async def share_rows(owner: str) -> str:
        shares = [item for item in await links.owned(SHARE, owner) if isinstance(item, Share)]
        described = [share_for_owner(service, share, await shared_files(service, share)) for share in shares]
        return await render_template("upload_service/_share_rows.html", shares=described)

    async def request_rows(owner: str) -> str:
        owned = [item for item in await links.owned(REQUEST, owner) if isinstance(item, FileRequest)]
        return await render_template("upload_service/_request_rows.html",
                                     requests=[request_for_owner(service, item) for item in owned])

    @bp.route("/ui/shares", methods=["GET"], endpoint="ui_shares")
    async def ui_shares() -> Any:
        identity = await service.require_identity(request)
        return await share_rows(identity.owner_key)

    async def revoke(kind: type[R], record_id: str) -> Response:
        """Revoke one of the caller's links; the empty answer replaces its row."""
        identity = await service.require_identity(request)
        await links.remove(await links.own(kind, identity.owner_key, record_id))
        return Response("", 200, content_type="text/html")

    @bp.route("/ui/shares/<share_id>", methods=["DELETE"], endpoint="ui_revoke_share")
    async def ui_revoke_share(share_id: str) -> Any:
        return await revoke(Share, share_id)

    @bp.route("/ui/requests", methods=["GET"], endpoint="ui_requests")
    async def ui_requests() -> Any:
        identity = await service.require_identity(request)
        return await request_rows(identity.owner_key)

    @bp.route("/ui/requests", methods=["POST"], endpoint="ui_create_request")
    async def ui_create_request() -> Any:
        identity = await service.require_identity(request)
        await new_request(service, links, passwords, identity, _request_body(await request.form))
        return await request_rows(identity.owner_key)

    @bp.route("/ui/requests/<request_id>", methods=["DELETE"], endpoint="ui_revoke_request")
    async def ui_revoke_request(request_id: str) -> Any:
        return await revoke(FileRequest, request_id)
