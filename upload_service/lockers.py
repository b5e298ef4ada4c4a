"""The service's locker: one holder per name across every worker (``file``) or every instance (``redis``).

tus serialises requests on one upload with it (namespace ``tus``), and the usage ledger serialises changes to
one owner's quota with it (namespace ``usage``); the cleanup sweep removes what it left for locks nobody holds.
``LOCKER`` picks one among those registered through the ``register_lockers`` hook; ``file`` is built in. The
locker is made at start-up; the file locker makes its folder only when it first locks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import StartupError
from .locking import FileLocker, Locker

if TYPE_CHECKING:
    from .service import UploadService


def make_locker(service: UploadService) -> Locker:
    """The locker ``LOCKER`` names; a start-up error if no plugin registered it."""
    factories: dict[str, Callable[[UploadService], Locker]] = {}

    def register(name: str, factory: Callable[[UploadService], Locker]) -> None:
        if name in factories:
            raise StartupError(f"two lockers are named {name!r}")
        factories[name] = factory

    register("file", lambda owner: FileLocker(Path(owner.settings.upload_dir) / ".locks"))
    service.call_registration(service.hook.register_lockers, register=register)
    factory = factories.get(service.settings.locker)
    if factory is None:
        known = ", ".join(sorted(factories)) or "none"
        raise StartupError(f"LOCKER={service.settings.locker!r} is not installed (known: {known})")
    return factory(service)
