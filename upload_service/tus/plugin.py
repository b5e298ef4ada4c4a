"""The tus default plugin: routes on the service's blueprint, the ``file`` locker, and the sweep of expired uploads.

It uses only the public API: hooks, ``service.storage.resumable``, ``service.settings``. Without a storage
that can resume (no ``resumable``), tus is simply not offered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from .. import hookimpl
from ..errors import StartupError
from .locking import FileLocker, Locker
from .operations import TusUploads
from .routes import register_tus_routes

if TYPE_CHECKING:
    from ..service import UploadService

log = logging.getLogger("upload_service.tus")
_uploads: WeakKeyDictionary[Any, TusUploads] = WeakKeyDictionary()  # per service instance, never shared


def _locker(service: UploadService) -> Locker:
    factories: dict[str, Callable[[UploadService], Locker]] = {}

    def register(name: str, factory: Callable[[UploadService], Locker]) -> None:
        if name in factories:
            raise StartupError(f"two lockers are named {name!r}")
        factories[name] = factory

    for result in service.hook.register_lockers(register=register, service=service):
        if result is not None:
            raise StartupError("the register_lockers hook must be a plain function that calls register()")
    factory = factories.get(service.settings.locker)
    if factory is None:
        known = ", ".join(sorted(factories)) or "none"
        raise StartupError(f"LOCKER={service.settings.locker!r} is not installed (known: {known})")
    return factory(service)


@hookimpl
def register_lockers(register: Callable[[str, Callable[[Any], Locker]], None]) -> None:
    register("file", lambda service: FileLocker(Path(service.settings.upload_dir) / ".locks"))


@hookimpl
def register_routes(blueprint: Any, service: UploadService) -> None:
    store = getattr(service.storage, "resumable", None)
    if store is None:
        log.warning("storage %r cannot resume uploads: tus is not offered", service.storage.name)
        return
    uploads = TusUploads(service, store, _locker(service))
    _uploads[service] = uploads
    register_tus_routes(blueprint, service, uploads)


@hookimpl
async def sweep(service: UploadService) -> int:
    uploads = _uploads.get(service)
    return await uploads.sweep() if uploads is not None else 0
