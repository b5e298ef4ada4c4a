"""The hooks: each event goes into the outbox before the hook returns; a background task delivers it."""

from __future__ import annotations

import logging
from typing import Any

from upload_service import StoredFile, hookimpl

from .config import WebhookSettings, endpoints_from
from .outbox import Outbox

log = logging.getLogger("upload_service.webhooks")


def outbox_of(service: Any) -> Outbox | None:
    return service.state("webhooks").get("outbox")


def make_outbox(service: Any) -> Outbox | None:
    """The service's outbox from its settings, None when no endpoint is configured; StartupError when a URL or
    secret is malformed."""
    settings = service.plugin_settings(WebhookSettings)
    endpoints = endpoints_from(settings)
    return Outbox(service, settings, endpoints) if endpoints else None


@hookimpl
def plugin_status(service: Any) -> str:
    endpoints = endpoints_from(service.plugin_settings(WebhookSettings))
    if not endpoints:
        return "inactive: no endpoint configured (set WEBHOOK_URLS or WEBHOOK_ENDPOINTS, and WEBHOOK_SECRET)"
    return "delivering to " + ", ".join(endpoint.label for endpoint in endpoints)


@hookimpl
async def startup(service: Any) -> None:
    service.state("webhooks")["outbox"] = make_outbox(service)


@hookimpl
def background_tasks(service: Any) -> list[Any]:
    outbox = outbox_of(service)
    return [outbox.run] if outbox is not None else []


async def _add(service: Any, event_type: str, data: dict[str, Any]) -> None:
    outbox = outbox_of(service)
    if outbox is not None:
        await outbox.add(event_type, data)


@hookimpl
async def upload_persisted(file: StoredFile, service: Any) -> None:
    await _add(service, "file.persisted", service.describe(file))


@hookimpl
async def file_deleted(file: StoredFile, service: Any) -> None:
    """The hook is told no reason: a temporary upload deleted once past its expiry is what the cleanup sweep
    removes, so that is ``file.expired``; anything else is ``file.deleted``."""
    expired = file.temporary and file.expired()
    await _add(service, "file.expired" if expired else "file.deleted", service.describe(file))


@hookimpl
async def share_downloaded(share: dict[str, Any], files: list[StoredFile], service: Any) -> None:
    await _add(service, "share.downloaded", {"share": share, "files": [service.describe(f) for f in files]})


@hookimpl
async def file_request_received(file_request: dict[str, Any], file: StoredFile, service: Any) -> None:
    await _add(service, "request.received", {"request": file_request, "file": service.describe(file)})
