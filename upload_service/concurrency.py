"""``MAX_CONCURRENT_UPLOADS``: how many upload requests one owner may have in progress at once, on all instances.

Each upload request (a JSON, multipart or raw upload, a tus POST or PATCH that carries bytes) takes a slot in
its owner's usage ledger while its body streams and gives it back however it ends; a slot of an instance that
died expires with its hold. A tus upload between two PATCHes takes no slot.
"""

from __future__ import annotations

from .errors import Problem
from .usage import Usage

RETRY_AFTER_SECONDS = 2


def check_slot(usage: Usage, limit: int) -> None:
    """Raise 429 when the owner already has ``limit`` uploads in progress (0: no limit)."""
    if limit and usage.slots >= limit:
        raise Problem(429, f"you already have {usage.slots} uploads in progress and at most {limit} may run at "
                           "once; retry when one has finished", reason="too_many_uploads",
                      headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, in_progress=usage.slots, limit=limit)
