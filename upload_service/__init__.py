"""upload-service: a self-hosted upload service and Quart extension with a pluggy plugin system.

This package root is the public API for plugins and host apps, with three public modules beside it:
``upload_service.storage`` (protocols for storage backend authors), ``upload_service.hookspecs`` (the hooks) and
``upload_service.testing`` (the pytest plugin and the plugin author's kit). Every other module is internal and may
change without notice; ``docs/plugins.md`` documents each name listed in ``__all__``.

Names are imported lazily, so a plugin that imports ``hookimpl`` does not pay for Quart until the service runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aio import complete as complete
    from .api.openapi import Param as Param, Reply as Reply, documented as documented
    from .app import create_app as create_app
    from .attempts import KeyedAttempt as KeyedAttempt
    from .auth import CSRF_HEADER as CSRF_HEADER, bearer_token as bearer_token
    from .body import too_large as too_large
    from .errors import (
        ObjectExists as ObjectExists,
        ObjectNotFound as ObjectNotFound,
        Problem as Problem,
        StartupError as StartupError,
        StorageBusy as StorageBusy,
        StorageError as StorageError,
        StorageFull as StorageFull,
        UploadRejected as UploadRejected,
    )
    from .filenames import (
        content_disposition as content_disposition,
        content_type_for as content_type_for,
        safe_filename as safe_filename,
    )
    from .files import (
        StoredFile as StoredFile,
        TusGrant as TusGrant,
        UploadInfo as UploadInfo,
        new_file_id as new_file_id,
    )
    from .hookspecs import hookimpl as hookimpl
    from .identity import Identity as Identity, owner_key as owner_key
    from .lean_path import ignores_raw_uploads as ignores_raw_uploads
    from .locking import (
        LockBusy as LockBusy,
        Locker as Locker,
        UploadLock as UploadLock,
        check_lock_name as check_lock_name,
    )
    from .quotas import QuotaExceeded as QuotaExceeded
    from .randomness import random_hex as random_hex
    from .reservations import Reservation as Reservation
    from .responses import iso as iso, json_response as json_response
    from .service import UploadService as UploadService
    from .serving import download_presentation as download_presentation
    from .sessions import PendingSignIns as PendingSignIns
    from .settings import (
        Duration as Duration,
        Settings as Settings,
        Size as Size,
        parse_duration as parse_duration,
        parse_size as parse_size,
    )
    from .storage import StoredObject as StoredObject
    from .tls import tls_context as tls_context
    from .uploads import UploadBatch as UploadBatch

# public name -> the internal module that defines it
_HOMES = {
    "UploadService": "service",
    "create_app": "app",
    "Settings": "settings",
    "hookimpl": "hookspecs",
    # values
    "Identity": "identity",
    "StoredFile": "files",
    "UploadInfo": "files",
    "TusGrant": "files",
    "KeyedAttempt": "attempts",
    "StoredObject": "storage",
    # errors
    "Problem": "errors",
    "StartupError": "errors",
    "UploadRejected": "errors",
    "StorageError": "errors",
    "StorageFull": "errors",
    "StorageBusy": "errors",
    "ObjectNotFound": "errors",
    "ObjectExists": "errors",
    # the ingest pipeline (service.batch, service.hold) for upload protocols
    "UploadBatch": "uploads",
    "Reservation": "reservations",
    "QuotaExceeded": "quotas",
    "too_large": "body",
    "safe_filename": "filenames",
    "content_type_for": "filenames",
    "owner_key": "identity",
    # locking (tus uploads, usage ledgers, any plugin that serialises work across workers)
    "Locker": "locking",
    "UploadLock": "locking",
    "LockBusy": "locking",
    "check_lock_name": "locking",
    # settings helpers for a plugin's own settings
    "Size": "settings",
    "Duration": "settings",
    "parse_size": "settings",
    "parse_duration": "settings",
    # HTTP helpers for plugin routes and auth providers
    "bearer_token": "auth",
    "PendingSignIns": "sessions",
    "CSRF_HEADER": "auth",
    "content_disposition": "filenames",
    "download_presentation": "serving",
    "documented": "api.openapi",
    "Param": "api.openapi",
    "Reply": "api.openapi",
    "ignores_raw_uploads": "lean_path",
    # outgoing HTTPS (identity providers, webhooks)
    "tls_context": "tls",
    # asyncio and ids
    "complete": "aio",
    "random_hex": "randomness",
    "new_file_id": "files",
    "iso": "responses",
    "json_response": "responses",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'upload_service' has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
