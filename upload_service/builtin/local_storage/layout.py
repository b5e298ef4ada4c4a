"""Where things live under ``UPLOAD_DIR``, and each object's record (size, sha256, created_at, the core's metadata)::

    objects/<key>              an object: one file, its record in the extended attribute ``user.upload_service``
    objects/<key>/data         an object of the older layout (and where the file system keeps no user xattrs):
    objects/<key>/meta.json    a folder of its bytes and its record; still read, listed, moved and deleted
    .records/<random>.json     the record of an object whose record is too large for an xattr (its xattr names it)
    .staging/<owner>-<random>  writes in progress, named after the storage that makes them (see ``owner``)
    .owners/<owner>            one lock file per open storage (process), flocked while it is open
    .trash/<random>/           folders of deleted objects of the older layout on their way out
    .resumable/<id>/           tus uploads in progress (see ``resumable``)

One file per object: a 100-byte upload costs one inode and one block, and one file to flush, where a folder, a
data file and ``meta.json`` cost three of each. Every change is still one atomic system call: a commit renames
a complete staging file into place (``renameat2``, refusing a taken key), a metadata update replaces the xattr,
a delete unlinks the file, a move renames it. The flushes follow ``DURABILITY`` (``group_commit``).
Everything here blocks: call it in the storage's threads.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from upload_service import random_hex
from upload_service.storage import ObjectExists, StoredObject, check_key, check_prefix

from .durable import link_unnamed, open_unnamed, rename_into, storage_error, unnamed_files_work, write_json
from .group_commit import Durability, GroupCommit, WriteBack, flusher

META = "meta.json"
DATA = "data"
ATTRIBUTE = "user.upload_service"
Flusher = GroupCommit | WriteBack
XATTR_ROOM = 3000  # bytes of record kept in the xattr; ext4 holds at most one block (4 KiB) of them per file
NO_XATTRS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})
TOO_LARGE = frozenset({errno.E2BIG, errno.ERANGE, errno.ENOSPC})


class Layout:
    """The folders of one ``UPLOAD_DIR`` (made if missing), the paths of what is in them, and its objects' records.

    ``xattrs`` says whether new objects are single files (the file system keeps user xattrs) or folders.
    """

    def __init__(self, root: Path, durability: Durability = "full") -> None:
        self.root = Path(root).resolve()
        self.objects = self.root / "objects"
        self._objects = str(self.objects)
        self.staging = self.root / ".staging"
        self.trash = self.root / ".trash"
        self.resumable = self.root / ".resumable"
        self.owners = self.root / ".owners"
        self.records = self.root / ".records"
        self.owner = random_hex(8)  # this storage's name: its staging folders start with it
        for folder in (self.objects, self.staging, self.trash, self.resumable, self.owners, self.records):
            folder.mkdir(parents=True, exist_ok=True)
        self.flush: Flusher = flusher(durability, self.objects)
        self.xattrs = _keeps_xattrs(self.staging)
        self.unnamed_files = unnamed_files_work(self.staging)  # with xattrs, small objects skip staging (``link``)

    def object_path(self, key: str) -> Path:
        return self.objects.joinpath(*check_key(key).split("/"))

    def object_file(self, key: str) -> str:
        """``object_path`` as a string, without ``pathlib``'s parsing (a rebuild reads every object's record)."""
        return f"{self._objects}/{check_key(key)}"

    def prefix_dir(self, prefix: str) -> Path:
        """The folder under which the objects of a listing prefix (``files/owner/``) live."""
        return self.objects.joinpath(*check_prefix(prefix)[:-1].split("/"))

    def upload_dir(self, upload_id: str) -> Path:
        return self.resumable / check_key(upload_id)

    def new_staging(self) -> Path:
        """A fresh name in ``.staging`` (not made yet), which the sweep spares while this storage is open."""
        return self.staging / f"{self.owner}-{random_hex(8)}"

    def staged_data(self, staging: Path) -> Path:
        """Where a write staged as ``staging`` puts its bytes: the staging file itself, or ``data`` in a folder."""
        return staging if self.xattrs else staging / DATA

    def make_staging(self, staging: Path) -> None:
        """Make what ``staged_data`` needs before the file is created (a folder, in the older layout)."""
        if not self.xattrs:
            staging.mkdir()

    def drop_staging(self, staging: Path) -> None:
        """Remove a staged write (its file, or folder), if it is there."""
        if self.xattrs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)

    def seal(self, staging: Path, fd: int, stored: StoredObject, flush: Flusher | None = None) -> None:
        """Give the complete, still hidden staged object its record and flush it (``fd``: its bytes, open);
        ``flush``: another flusher than the storage's (a record written as under ``DURABILITY=relaxed``)."""
        flush = flush or self.flush
        if self.xattrs:
            self._set_record(fd, stored, flush)
            flush.data(fd)
        else:
            flush.data(fd)
            write_json(staging / META, _record(stored), flush.data, fresh=True)

    def open_unnamed(self, key: str) -> int | None:
        """An unnamed file in ``key``'s folder for a new object to be written, sealed and ``link``-ed as ``key``;
        None where the storage keeps objects otherwise (then it is staged and placed)."""
        return open_unnamed(self.object_path(key).parent) if self.xattrs and self.unnamed_files else None

    def link(self, fd: int, key: str, flush: Flusher | None = None) -> None:
        """Name a sealed unnamed file ``key``: the atomic commit of an object that was never staged."""
        self._commit(key, lambda target: link_unnamed(fd, target), flush)

    def place(self, staging: Path, key: str, flush: Flusher | None = None) -> None:
        """Rename a sealed staging file (or folder) into place as ``key``: the atomic commit."""
        self._commit(key, lambda target: rename_into(staging, target), flush)

    def _commit(self, key: str, name: Callable[[Path], None], flush: Flusher | None) -> None:
        """``name(target)`` gives the object its key's path (refusing a taken one), then the folder is flushed."""
        target = self.object_path(key)
        try:
            name(target)
            (flush or self.flush).commit(target.parent)
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise ObjectExists(key) from error
            raise storage_error(error) from error

    def remove(self, path: Path) -> bool:
        """Take an object (or an upload's folder) away at once, flushed; False if it was not there. A file is
        unlinked; a folder is renamed into ``.trash`` first, then deleted."""
        record = self._record_file(path)
        try:
            os.unlink(path)
        except (IsADirectoryError, PermissionError):  # a folder (Linux says EISDIR, POSIX allows EPERM)
            return self._remove_folder(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        self.flush.commit(path.parent)
        if record is not None:
            record.unlink(missing_ok=True)
        return True

    def _remove_folder(self, folder: Path) -> bool:
        doomed = self.trash / random_hex(16)
        try:
            os.rename(folder, doomed)
        except (FileNotFoundError, NotADirectoryError):
            return False
        self.flush.commit(folder.parent)
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
            child = f"{key}/{entry.name}"
            if entry.is_file(follow_symlinks=False):
                keys.append(child)
            elif not entry.is_dir(follow_symlinks=False):
                continue
            elif os.path.exists(os.path.join(entry.path, META)):
                keys.append(child)
            else:
                keys.extend(self.keys_under(Path(entry.path), child))
        return keys

    # -- records ------------------------------------------------------------------------------------

    def read_record(self, path: Path | str, key: str) -> StoredObject | None:
        """The object at ``path``, or None: not there, not an object, or (after a power cut under
        ``DURABILITY=relaxed``) a file shorter than its record says."""
        return self.read_entry(path, key)[0]

    def read_entry(self, path: Path | str, key: str) -> tuple[StoredObject | None, str | None]:
        """``read_record``, and the name of the ``.records`` file that holds the record, if one does."""
        try:
            raw = os.getxattr(path, ATTRIBUTE)
        except (FileNotFoundError, NotADirectoryError):
            return None, None
        except OSError as error:
            if error.errno == errno.ENODATA or error.errno in NO_XATTRS:  # a folder of the older layout
                return read_meta(path, key), None
            raise
        record = msgspec.json.decode(raw)
        name = record.get("record")
        if name is not None:  # too large for the xattr: kept in ``.records``
            try:
                record = msgspec.json.decode((self.records / name).read_bytes())
            except FileNotFoundError:
                return None, name
        try:
            if os.stat(path).st_size != record["size"]:
                return None, name
        except FileNotFoundError:
            return None, None
        return _stored(record, key), name

    def record_names(self, folder: Path) -> set[str]:
        """The ``.records`` files the files directly in ``folder`` name (``.staging``: records being committed)."""
        names = set()
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError, msgspec.DecodeError):  # gone meanwhile, a folder, no record yet
                name = msgspec.json.decode(os.getxattr(entry.path, ATTRIBUTE)).get("record")
                if name is not None:
                    names.add(name)
        return names

    def write_record(self, path: Path, stored: StoredObject) -> None:
        """Replace the record of the object at ``path`` atomically, and flush it (``FileNotFoundError`` if gone)."""
        fd = os.open(path, os.O_RDONLY)
        try:
            folder = stat.S_ISDIR(os.fstat(fd).st_mode)
            old = None if folder else self._record_file(fd)
            if folder:
                write_json(path / META, _record(stored), self.flush.data)
            else:
                self._set_record(fd, stored)
        finally:
            os.close(fd)
        self.flush.commit(path if folder else path.parent)
        if old is not None:
            old.unlink(missing_ok=True)

    def _set_record(self, fd: int, stored: StoredObject, flush: Flusher | None = None) -> None:
        flush = flush or self.flush
        encoded = msgspec.json.encode(_record(stored))
        if len(encoded) <= XATTR_ROOM:
            try:
                os.setxattr(fd, ATTRIBUTE, encoded)
                return
            except OSError as error:
                if error.errno not in TOO_LARGE:
                    raise
        name = f"{random_hex(16)}.json"
        write_json(self.records / name, _record(stored), flush.data, fresh=True)
        flush.commit(self.records)
        os.setxattr(fd, ATTRIBUTE, msgspec.json.encode({"record": name}))

    def _record_file(self, target: int | Path) -> Path | None:
        """The ``.records`` file that holds the record of an object (its path or open file), if it is kept there."""
        try:
            record = msgspec.json.decode(os.getxattr(target, ATTRIBUTE))
        except OSError:
            return None
        return self.records / record["record"] if "record" in record else None

    def data_of(self, path: Path) -> Path:
        """The file of an object's bytes: ``path``, or ``path/data`` for a folder of the older layout."""
        return path / DATA if path.is_dir() else path


def _keeps_xattrs(folder: Path) -> bool:
    """Whether the file system of ``folder`` keeps user xattrs (tmpfs before Linux 6.6, some mounts do not)."""
    if not hasattr(os, "setxattr"):  # not Linux
        return False
    probe = folder / f"xattr-probe-{random_hex(8)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            os.setxattr(fd, ATTRIBUTE, b"{}")
        finally:
            os.close(fd)
    except OSError as error:
        if error.errno in NO_XATTRS:
            return False
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(probe)
    return True


def _record(stored: StoredObject) -> dict[str, Any]:
    return {"size": stored.size, "sha256": stored.sha256, "created_at": stored.created_at.isoformat(),
            "metadata": stored.metadata}


def _stored(record: dict[str, Any], key: str) -> StoredObject:
    return StoredObject(key=key, size=record["size"], sha256=record["sha256"],
                        created_at=datetime.fromisoformat(record["created_at"]), metadata=record.get("metadata", {}))


def read_meta(folder: Path | str, key: str) -> StoredObject | None:
    """The object of the older layout whose folder is ``folder``, or None if it has no ``meta.json``."""
    try:
        with open(os.path.join(folder, META), encoding="utf-8") as handle:
            record = json.load(handle)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _stored(record, key)


def write_meta(folder: Path, stored: StoredObject, flush: Any, *, fresh: bool = False) -> None:
    """Write ``folder/meta.json`` (``fresh``: a new file in a staging folder, see ``write_json``)."""
    write_json(folder / META, _record(stored), flush, fresh=fresh)
