"""The hooks: each event goes into the outbox before the hook returns; a background task delivers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from upload_service import StoredFile, hookimpl

from .config import WebhookSettings, endpoints_from
from .outbox import Outbox


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


def _add(service: Any, event_type: str, data: Callable[[], dict[str, Any]]) -> Awaitable[Any] | None:
    """The outbox write of an event, for the core to await; nothing (not even the event's data, or a task to
    await) while no endpoint is configured: an installed, inactive plugin costs each upload nothing."""
    outbox = outbox_of(service)
    return None if outbox is None else outbox.add(event_type, data())


@hookimpl
def upload_persisted(file: StoredFile, service: Any) -> Awaitable[Any] | None:
    return _add(service, "file.persisted", lambda: service.describe(file))


@hookimpl
def file_deleted(file: StoredFile, service: Any) -> Awaitable[Any] | None:
    """The hook is told no reason: a temporary upload deleted once past its expiry is what the cleanup sweep
    removes, so that is ``file.expired``; anything else is ``file.deleted``."""
    expired = file.temporary and file.expired()
    return _add(service, "file.expired" if expired else "file.deleted", lambda: service.describe(file))


@hookimpl
def share_downloaded(share: dict[str, Any], files: list[StoredFile], service: Any) -> Awaitable[Any] | None:
    return _add(service, "share.downloaded", lambda: {"share": share, "files": [service.describe(f) for f in files]})


@hookimpl
def file_request_received(file_request: dict[str, Any], file: StoredFile, service: Any) -> Awaitable[Any] | None:
    return _add(service, "request.received", lambda: {"request": file_request, "file": service.describe(file)})
