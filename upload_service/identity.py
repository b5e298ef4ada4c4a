"""Who is calling: the value every auth provider returns."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Identity:
    """An authenticated caller.

    ``id`` is stable and namespaced by provider (``github:583231``, ``token:ci``) so that two providers
    never share an owner by accident; ``name`` is what the UI shows.
    """

    id: str
    name: str
    provider: str
    email: str | None = None

    @property
    def owner_key(self) -> str:
        """Storage-safe owner folder: a hash, so no identity text ever becomes part of a path."""
        return owner_key(self.id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        return cls(id=data["id"], name=data["name"], provider=data["provider"], email=data.get("email"))


def owner_key(identity_id: str) -> str:
    return hashlib.sha256(identity_id.encode()).hexdigest()[:32]
