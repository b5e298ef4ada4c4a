"""Resumable uploads into a file request: tus at ``/r/<token>/tus``, through the tus plugin's
``register_tus_endpoints`` hook, under the same rules as the request's other upload routes.

Every tus request of the endpoint asks the request link again (revoked or expired stops an upload mid-way);
the uploads belong to the owner (their quota) within a scope of the request's own, so the link reaches only the
uploads made through it. A file counts against ``max_files`` when it is committed (``slots``; a full request
refuses it with 409 and it is not kept), not when it starts, so abandoned uploads hold nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from upload_service import TusGrant

from .descriptions import owner_identity
from .records import FileRequest
from .request_pages import notify_received, size_limit, uploader_headers
from .slots import give_back, open_for_upload, take_slot

if TYPE_CHECKING:
    from quart import Request

    from upload_service import StoredFile, UploadService

    from .store import LinkStore
    from .visits import Visits


def register_request_tus(register: Any, service: UploadService, links: LinkStore, visits: Visits) -> None:
    async def authorize(request: Request, token: str) -> TusGrant:
        attempt = service.keyed_attempt()  # a creation with its key (its file committed at once when complete)
        file_request = await open_for_upload(visits, token, attempt)

        @asynccontextmanager
        async def admission() -> AsyncIterator[None]:
            await take_slot(service, links, file_request, attempt)
            try:
                yield
            except BaseException:
                await give_back(links, file_request, 1, attempt)
                raise

        def received(file: StoredFile) -> None:
            notify_received(service, file_request, [file])

        return TusGrant(owner_identity(file_request), scope=f"request-{file_request.id}",
                        metadata=uploader_headers(file_request), max_size=size_limit(service, file_request),
                        admission=admission, received=received)

    async def key_scope(request: Request, token: str) -> str:
        return await visits.key_scope(token, FileRequest)

    register("request_tus", "/r/<token>/tus", authorize, key_scope=key_scope)
