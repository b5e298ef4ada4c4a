"""The service's locker: one holder per name across every worker (``file``) or every instance (``redis``).

tus serialises requests on one upload with it, and the usage ledger serialises changes to one owner's quota
with it. ``LOCKER`` picks one among those registered through the ``register_lockers`` hook; ``file`` is built
in. The locker is made on first use, so a service that never locks never creates a lock folder.
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
    for result in service.hook.register_lockers(register=register, service=service):
        if result is not None:
            raise StartupError("the register_lockers hook must be a plain function that calls register()")
    factory = factories.get(service.settings.locker)
    if factory is None:
        known = ", ".join(sorted(factories)) or "none"
        raise StartupError(f"LOCKER={service.settings.locker!r} is not installed (known: {known})")
    return factory(service)
