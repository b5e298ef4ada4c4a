"""Temporary-upload tokens: signed with SECRET_KEY (itsdangerous), bound to a file and its owner, timed."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .errors import Problem

_SALT = "upload_service.temporary-upload"


@dataclass(frozen=True)
class TokenClaim:
    file_id: str
    owner_key: str


class TemporaryTokens:
    def __init__(self, secret_key: str, ttl: float) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=_SALT)
        self._ttl = ttl

    def issue(self, file_id: str, owner_key: str) -> str:
        return self._serializer.dumps({"f": file_id, "o": owner_key})

    def read(self, token: object) -> TokenClaim:
        """The claim of a token: 410 when it has expired, 400 when it is not one of ours."""
        if not isinstance(token, str) or not token:
            raise Problem(400, "a token must be a non-empty string", reason="bad_token")
        try:
            # itsdangerous hints max_age as int, but only compares it with the token's age: a float works
            data = self._serializer.loads(token, max_age=self._ttl)  # type: ignore[arg-type]
        except SignatureExpired:
            raise Problem(410, "this temporary upload has expired", reason="token_expired") from None
        except BadSignature:
            raise Problem(400, "this is not a valid upload token", reason="bad_token") from None
        if not isinstance(data, dict) or not isinstance(data.get("f"), str) or not isinstance(data.get("o"), str):
            raise Problem(400, "this is not a valid upload token", reason="bad_token")
        return TokenClaim(file_id=data["f"], owner_key=data["o"])
