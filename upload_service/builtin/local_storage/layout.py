"""Where things live under ``UPLOAD_DIR``, and the ``meta.json`` that makes a folder an object::

    objects/<key>/data         the bytes
    objects/<key>/meta.json    size, sha256, created_at and the core's metadata
    .staging/<owner>-<random>/ writes in progress, named after the storage that makes them (see ``owner``)
    .owners/<owner>            one lock file per open storage (process), flocked while it is open
    .trash/<random>/           deleted objects on their way out
    .resumable/<id>/           tus uploads in progress (see ``resumable``)

An object is one directory, so every change is one atomic ``rename``: a commit renames a fully written,
fsynced staging directory into place; a delete renames it into ``.trash`` first; a move renames it across.
Everything here blocks: call it in the storage's threads.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from upload_service import random_hex
from upload_service.storage import ObjectExists, StoredObject, check_key, check_prefix

from .durable import fsync_dir, rename_into, storage_error, write_json

META = "meta.json"
DATA = "data"


class Layout:
    """The folders of one ``UPLOAD_DIR`` (made if missing) and the paths of what is in them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.objects = self.root / "objects"
        self.staging = self.root / ".staging"
        self.trash = self.root / ".trash"
        self.resumable = self.root / ".resumable"
        self.owners = self.root / ".owners"
        self.owner = random_hex(8)  # this storage's name: its staging folders start with it
        for folder in (self.objects, self.staging, self.trash, self.resumable, self.owners):
            folder.mkdir(parents=True, exist_ok=True)

    def object_dir(self, key: str) -> Path:
        return self.objects.joinpath(*check_key(key).split("/"))

    def prefix_dir(self, prefix: str) -> Path:
        """The folder under which the objects of a listing prefix (``files/owner/``) live."""
        return self.objects.joinpath(*check_prefix(prefix)[:-1].split("/"))

    def upload_dir(self, upload_id: str) -> Path:
        return self.resumable / check_key(upload_id)

    def new_staging(self) -> Path:
        """A fresh name in ``.staging`` (not made yet), which the sweep spares while this storage is open."""
        return self.staging / f"{self.owner}-{random_hex(8)}"

    def place(self, folder: Path, key: str) -> None:
        """Rename a complete staging folder (``data`` + ``meta.json``) into place as ``key``: the atomic commit."""
        target = self.object_dir(key)
        try:
            rename_into(folder, target)
            fsync_dir(target.parent)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise ObjectExists(key) from error
            raise storage_error(error) from error

    def remove(self, folder: Path) -> bool:
        """Take ``folder`` away at once (a rename into ``.trash``), then delete it; False if it was not there."""
        doomed = self.trash / random_hex(16)
        try:
            os.rename(folder, doomed)
        except (FileNotFoundError, NotADirectoryError):
            return False
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def keys_under(self, folder: Path, key: str) -> list[str]:
        """The keys of every object below ``folder`` (whose own key is ``key``), in no particular order."""
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        keys = []
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            child = f"{key}/{entry.name}"
            if os.path.exists(os.path.join(entry.path, META)):
                keys.append(child)
            else:
                keys.extend(self.keys_under(Path(entry.path), child))
        return keys


def read_meta(folder: Path, key: str) -> StoredObject | None:
    """The object whose folder is ``folder``, or None if it has no ``meta.json`` (not an object, or gone)."""
    try:
        with open(folder / META, encoding="utf-8") as handle:
            record = json.load(handle)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return StoredObject(key=key, size=record["size"], sha256=record["sha256"],
                        created_at=datetime.fromisoformat(record["created_at"]), metadata=record.get("metadata", {}))


def write_meta(folder: Path, stored: StoredObject, *, fresh: bool = False) -> None:
    """Write ``folder/meta.json`` durably (``fresh``: a new file in a staging folder, see ``write_json``)."""
    record: dict[str, Any] = {"size": stored.size, "sha256": stored.sha256,
                              "created_at": stored.created_at.isoformat(), "metadata": stored.metadata}
    write_json(folder / META, record, fresh=fresh)
