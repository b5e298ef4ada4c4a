"""Per-owner quotas (``USER_QUOTA_BYTES``, ``USER_QUOTA_FILES``): the checks and the problem a refusal gives.

A refusal is 413 rather than 507: the request is too large *for this owner's quota*, which the client can fix
(delete files, send less) and must not blindly retry, while 507 says the server itself is out of room (and
tus clients retry 5xx answers). The problem says which quota, what is used (uploads in progress included) and
the limit, as ``quota``, ``used`` and ``limit`` members too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Problem
from .settings import Settings
from .usage import Usage


class QuotaExceeded(Problem):
    """An upload that would take its owner over a quota; nothing of it is kept."""


@dataclass(frozen=True)
class Quotas:
    """The limits of one service; 0 means unlimited."""

    max_bytes: int = 0
    max_files: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Quotas:
        return cls(settings.user_quota_bytes, settings.user_quota_files)

    @property
    def enabled(self) -> bool:
        return bool(self.max_bytes or self.max_files)

    def room(self, usage: Usage) -> int | None:
        """Bytes the owner may still take, or None without a byte quota."""
        if not self.max_bytes:
            return None
        return max(0, self.max_bytes - usage.bytes - usage.held_bytes)

    def check(self, usage: Usage, more_bytes: int, more_files: int) -> None:
        """Raise ``QuotaExceeded`` unless ``more_bytes`` and ``more_files`` fit beside what is stored and held."""
        files = usage.files + usage.held_files
        if self.max_files and more_files and files + more_files > self.max_files:
            raise QuotaExceeded(
                413, f"file quota exceeded: you have {files} of your {self.max_files} files "
                     "(uploads in progress included); delete some to upload more",
                reason="quota_exceeded", quota="files", used=files, limit=self.max_files)
        room = self.room(usage)
        if room is not None and more_bytes > room:
            used = usage.bytes + usage.held_bytes
            raise QuotaExceeded(
                413, f"storage quota exceeded: you use {used} of your {self.max_bytes} bytes (uploads in progress "
                     f"included) and this upload needs {more_bytes} more; delete files to make room",
                reason="quota_exceeded", quota="bytes", used=used, limit=self.max_bytes)
