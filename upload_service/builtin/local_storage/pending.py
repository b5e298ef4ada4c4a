"""``PendingJournal``: the keys one storage is changing right now, as lines appended to a file of its own.

Step 1 of the index's rule (``index``) used to be an SQLite transaction of its own, before every change: the
costliest part of a small upload's index work. A line appended to a file the process already holds open is one
``write`` to the page cache, and a process that dies leaves it behind just as surely (a power cut is covered by
the index's boot check, not by these notes). ``heal`` reads the journals of writers that died.

Each storage writes ``.index/pending/<owner>.<n>``; past ``ROTATE_BYTES`` it starts the next ``n``, and a
journal whose every change has settled is removed, so a live journal stays small however long the process runs.
Lines are ``<seconds since the epoch> <key>``; keys hold no spaces or line breaks (``check_key``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FOLDER = "pending"
ROTATE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Note:
    """A key a writer noted, when, and in which of its journals (None: a row of the older ``pending`` table)."""

    key: str
    writer: str
    at: float
    journal: Path | None


def journal_writer(path: Path) -> str:
    """The owner name a journal file belongs to (``<owner>.<n>``)."""
    return path.name.rsplit(".", 1)[0]


def journals(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except FileNotFoundError:
        return []


def read_notes(folder: Path) -> Iterator[Note]:
    """Every note of every journal in ``folder`` (a torn last line, from a process killed mid-write, is skipped)."""
    for journal in journals(folder):
        writer = journal_writer(journal)
        try:
            text = journal.read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines(keepends=True):
            at, _, key = line.rstrip("\n").partition(" ")
            if not line.endswith("\n") or not key:
                continue
            try:
                yield Note(key, writer, float(at), journal)
            except ValueError:
                continue


class PendingJournal:
    """One storage's notes. ``note`` before a change, ``done`` once it settled; a change whose settle failed
    is never ``done``, so its journal stays for ``heal`` (each call returns at once)."""

    def __init__(self, folder: Path, writer: str) -> None:
        self.folder = folder
        self.writer = writer
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._number = 0
        self._size = 0
        self._open_changes: dict[int, int] = {}  # journal number -> changes noted in it and not yet done

    @property
    def open_changes(self) -> int:
        """Changes noted and not yet done (settled), in all of this storage's journals."""
        with self._lock:
            return sum(self._open_changes.values())

    def path(self, number: int) -> Path:
        return self.folder / f"{self.writer}.{number}"

    def note(self, keys: tuple[str, ...]) -> int:
        """Append ``keys``; returns the journal's number, to hand to ``done``."""
        line = "".join(f"{time.time():.3f} {key}\n" for key in keys).encode()
        with self._lock:
            if self._fd is None or self._size >= ROTATE_BYTES:
                self._start_next()
            os.write(self._fd, line)  # type: ignore[arg-type]  # O_APPEND: one write, whole lines
            self._size += len(line)
            self._open_changes[self._number] = self._open_changes.get(self._number, 0) + 1
            return self._number

    def done(self, number: int) -> None:
        """The change noted in journal ``number`` settled; a finished journal other than the current goes."""
        with self._lock:
            left = self._open_changes[number] - 1
            if left or number == self._number:
                self._open_changes[number] = left
                return
            del self._open_changes[number]
        self.path(number).unlink(missing_ok=True)

    def _start_next(self) -> None:
        """Under the lock: open the next journal (the current one goes once its changes are done)."""
        old = self._fd
        self.folder.mkdir(parents=True, exist_ok=True)
        number = self._number + 1
        self._fd = os.open(self.path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o640)
        if old is not None:
            os.close(old)
            if not self._open_changes.get(self._number):
                self._open_changes.pop(self._number, None)
                self.path(self._number).unlink(missing_ok=True)
        self._number, self._size = number, 0

    def close(self) -> None:
        """Let go of the file, and remove the journals whose changes all settled (a note whose settle failed
        stays for ``heal``)."""
        with self._lock:
            fd, self._fd = self._fd, None
            finished = [number for number in {*self._open_changes, self._number} if not self._open_changes.get(number)]
            self._open_changes = {number: left for number, left in self._open_changes.items() if left}
        if fd is not None:
            os.close(fd)
        for number in finished:
            self.path(number).unlink(missing_ok=True)
