"""The sharing default plugin: share links that let anyone download, and file requests that let anyone upload.

Built on the public API only: its records live in ``service.storage`` and its counters change under
``service.locker``, so several instances share them; its routes are on the service's blueprint, so the security
headers, CSP and per-address rate limits of the rest of the service apply to them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from upload_service import StoredFile, hookimpl, owner_key

from .passwords import Passwords
from .records import REQUEST, SHARE, Share, now
from .request_api import register_request_api
from .request_pages import register_request_pages
from .request_tus import register_request_tus
from .share_api import register_share_api
from .share_pages import register_share_pages
from .store import LinkStore
from .ui import register_sharing_ui
from .unlock import Unlocks
from .visits import Visits

if TYPE_CHECKING:
    from upload_service import UploadService

STATE = "sharing"
KEEP_EXPIRED = timedelta(days=30)


def _parts(service: UploadService) -> tuple[LinkStore, Passwords, Visits]:
    """The plugin's objects for this service, made by whichever of its registration hooks runs first."""
    state = service.state(STATE)
    if "links" not in state:
        links, passwords = LinkStore(service), Passwords()
        state.update(links=links, passwords=passwords,
                     visits=Visits(service, links, Unlocks(service.secret_key), passwords))
    return state["links"], state["passwords"], state["visits"]


@hookimpl
def register_routes(blueprint: Any, service: UploadService) -> None:
    links, passwords, visits = _parts(service)
    service.redact_in_logs("token")  # a link's token in a log line would open the link for its reader
    register_share_api(blueprint, service, links, passwords)
    register_share_pages(blueprint, service, links, visits)
    register_request_api(blueprint, service, links, passwords)
    register_request_pages(blueprint, service, links, visits)
    register_sharing_ui(blueprint, service, links, passwords)


@hookimpl
def register_tus_endpoints(register: Any, service: UploadService) -> None:
    """Resumable uploads into file requests, at ``/r/<token>/tus`` (when the tus plugin is on)."""
    links, _, visits = _parts(service)
    register_request_tus(register, service, links, visits)


@hookimpl
async def sweep(service: UploadService) -> int:
    """Links that expired more than ``KEEP_EXPIRED`` ago go; until then their owner still sees them as expired."""
    links: LinkStore | None = service.state(STATE).get("links")
    if links is None:
        return 0
    removed = 0
    before = now() - KEEP_EXPIRED
    for kind in (SHARE, REQUEST):
        async for record in links.expired_long_ago(kind, before):
            removed += await links.remove(record)
    return removed


@hookimpl
async def file_deleted(file: StoredFile, service: UploadService) -> None:
    """A deleted file leaves every share of its owner; a share left with no file is revoked."""
    links: LinkStore | None = service.state(STATE).get("links")
    if links is None or file.temporary:
        return
    for share in await links.owned(SHARE, owner_key(file.owner)):
        if not isinstance(share, Share) or file.id not in share.files:
            continue
        try:
            updated, _ = await links.change(share, lambda current: _without(current, file.id))
        except LookupError:
            continue
        if not updated.files:
            await links.remove(updated)


def _without(share: Share, file_id: str) -> None:
    share.files = [kept for kept in share.files if kept != file_id]
