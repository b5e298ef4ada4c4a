"""Checking the provider's JWTs: ID tokens from sign-in, and access tokens sent as API bearer tokens.

Only asymmetric signatures are accepted (keys from the provider's JWKS; never ``none``, never HMAC with the
client secret). Both kinds must name the configured issuer, an unexpired ``exp`` (60 s of clock skew), and the
right audience: the client id for ID tokens (with ``azp`` when several audiences), ``_AUDIENCE`` (default the
client id) for access tokens. An ID token must carry the ``nonce`` its sign-in sent. An access token must not
carry a ``nonce`` (only ID tokens do), so an ID token cannot be replayed as an API credential.
"""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from .issuer import Issuer

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
LEEWAY = 60


class InvalidToken(Exception):
    """The token is not one this provider issued for us, or no longer valid; the message says which check."""


def _kid(token: str) -> str | None:
    try:
        header = extract_compact(token.encode()).headers()
    except (JoseError, ValueError, UnicodeError) as error:
        raise InvalidToken(f"not a signed JWT ({error})") from None
    if header.get("alg") not in ALGORITHMS:
        raise InvalidToken(f"signed with {header.get('alg')!r}, which is not accepted")
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


async def verified_claims(issuer: Issuer, token: str, audience: str, **expected: Any) -> dict[str, Any]:
    """The claims of ``token`` once its signature, ``iss``, ``aud``, ``exp`` and ``expected`` claims hold."""
    keys = await issuer.keys(_kid(token))
    try:
        decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
    except (JoseError, ValueError) as error:
        raise InvalidToken(f"bad signature or unknown key ({error})") from None
    options: dict[str, Any] = {
        "iss": {"essential": True, "value": issuer.config.issuer}, "aud": {"essential": True, "value": audience},
        "exp": {"essential": True}, "sub": {"essential": True},
        **{name: {"essential": True, "value": value} for name, value in expected.items()}}
    registry = jwt.JWTClaimsRegistry(leeway=LEEWAY, **options)
    try:
        registry.validate(decoded.claims)
    except JoseError as error:
        raise InvalidToken(f"{error.error}: {error.description}") from None
    claims = dict(decoded.claims)
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidToken("no subject")
    return claims


async def id_token_claims(issuer: Issuer, token: str, nonce: str) -> dict[str, Any]:
    claims = await verified_claims(issuer, token, issuer.config.client_id, nonce=nonce)
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != issuer.config.client_id:
        raise InvalidToken("several audiences and the azp claim is not our client id")
    return claims


async def access_token_claims(issuer: Issuer, token: str) -> dict[str, Any]:
    claims = await verified_claims(issuer, token, issuer.config.audience)
    if "nonce" in claims:
        raise InvalidToken("an ID token is not an access token")
    return claims
