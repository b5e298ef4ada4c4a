"""upload-service: a self-hosted upload service and Quart extension with a pluggy plugin system."""

from .errors import Problem, StartupError, StorageFull, UploadRejected
from .files import StoredFile, UploadInfo
from .hookspecs import hookimpl
from .identity import Identity

__all__ = [
    "Identity",
    "Problem",
    "StartupError",
    "StorageFull",
    "StoredFile",
    "UploadInfo",
    "UploadRejected",
    "UploadService",
    "create_app",
    "hookimpl",
]


def __getattr__(name: str):  # imported lazily so that plugins importing ``hookimpl`` do not load Quart twice over
    if name == "UploadService":
        from .service import UploadService

        return UploadService
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
