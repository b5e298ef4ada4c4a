"""The cookie that a correct password gives: good for one link only, for a day at most, and never for another.

Its value is signed with the service's ``SECRET_KEY`` (itsdangerous, as Quart's own session) and names the
link's id and the tail of its password hash, so it opens nothing else; its ``Path`` is the link's own URL, so
the browser does not even send it elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeTimedSerializer

from .records import FileRequest, Share

MAX_AGE = 24 * 3600
SALT = "upload-service.link-unlock"


class Unlocks:
    """Make and check unlock cookies for share links and file requests."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=SALT)

    @staticmethod
    def cookie_name(record: Share | FileRequest) -> str:
        return f"unlock-{record.id}"

    @staticmethod
    def _claim(record: Share | FileRequest) -> str:
        return f"{record.kind}:{record.id}:{(record.password_hash or '')[-16:]}"

    def value(self, record: Share | FileRequest) -> str:
        return self._serializer.dumps(self._claim(record))

    def max_age(self, record: Share | FileRequest) -> int:
        if record.expires_at is None:
            return MAX_AGE
        return max(1, min(MAX_AGE, int((record.expires_at - datetime.now(UTC)).total_seconds())))

    def unlocked(self, record: Share | FileRequest, cookies: dict[str, str]) -> bool:
        if not record.has_password:
            return True
        presented = cookies.get(self.cookie_name(record))
        if not presented:
            return False
        try:
            claim = self._serializer.loads(presented, max_age=MAX_AGE)
        except BadSignature:
            return False
        return claim == self._claim(record)
