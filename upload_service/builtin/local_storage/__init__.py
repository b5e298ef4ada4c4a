"""Local-disk storage backend (``STORAGE_BACKEND=local``), safe with several workers on one ``UPLOAD_DIR``.

One job per module: ``storage`` (``LocalStorage``, the ``Storage`` protocol), ``object_writer`` (a new object
streamed into staging and renamed into place), ``buffered`` and ``disk_lane`` (writing a file behind the network,
off the event loop), ``writeback`` (asking the disk to start early), ``layout`` (the folders, and each object as
one file with its record in an xattr), ``group_commit`` (``DURABILITY``: flushes shared by the uploads that finish
together, or none), ``durable`` (atomic renames, disk errors in the core's terms), ``owner`` (the lock that marks
an open storage's staging files as in use), ``sweep`` (what dead writers left), ``index`` (the SQLite index that
listings, the expiry sweep and usage totals read) and ``reindex`` (rebuilding and healing it from the disk),
``reading``, ``threads`` (the storage's thread pool, started by ``open``) and ``resumable`` (tus uploads in
progress). This module registers the backend."""

from __future__ import annotations

from upload_service import hookimpl

from .object_writer import LocalObjectWriter
from .storage import LocalStorage

__all__ = ["LocalObjectWriter", "LocalStorage", "register_storage_backends"]


@hookimpl
def register_storage_backends(register, service) -> None:
    register("local", lambda service: LocalStorage(service.settings.upload_dir, service.settings.durability))
