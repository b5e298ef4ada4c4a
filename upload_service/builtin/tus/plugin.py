"""The tus default plugin: routes on the service's blueprint and the sweep of expired uploads.

It uses only the public API: hooks, ``service.storage.resumable``, ``service.locker``, the ingest pipeline
(``service.batch``, ``service.hold``) and ``service.state`` for what it keeps per service.
Without a storage that can resume (no ``resumable``), tus is simply not offered.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from upload_service import hookimpl

from .operations import TusUploads
from .routes import register_tus_routes

if TYPE_CHECKING:
    from upload_service import UploadService

log = logging.getLogger("upload_service.tus")
STATE = "tus"


@hookimpl
def register_routes(blueprint: Any, service: UploadService) -> None:
    store = getattr(service.storage, "resumable", None)
    if store is None:
        log.warning("storage %r cannot resume uploads: tus is not offered", service.storage.name)
        return
    uploads = TusUploads(service, store, service.locker)
    service.state(STATE)["uploads"] = uploads
    register_tus_routes(blueprint, service, uploads)


@hookimpl
async def sweep(service: UploadService) -> int:
    uploads: TusUploads | None = service.state(STATE).get("uploads")
    return await uploads.sweep() if uploads is not None else 0
