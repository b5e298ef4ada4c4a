"""The OIDC plugin's checks of ID tokens and access tokens, on tokens this test signs with keys of its own (the
provider's JWKS stands in as a key set already fetched), and its settings at start-up."""

from __future__ import annotations

import logging
import time

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from upload_service import Settings, StartupError, create_app
from upload_service_oidc.config import ProviderConfig, Rule
from upload_service_oidc.issuer import Issuer
from upload_service_oidc.tokens import InvalidToken, access_token_claims, id_token_claims

ISSUER = "https://id.example.org"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})  # same kid, not the provider's


def issuer() -> Issuer:
    config = ProviderConfig(name="corp", issuer=ISSUER, client_id="uploads", client_secret="s", scopes="openid",
                            title="Corp", allowed=(), bearer=True, audience="api://uploads", jwks_refresh_interval=30)
    known = Issuer(config)

    async def keys(kid: str | None) -> KeySet:
        return KeySet([KEY])

    known.keys = keys  # type: ignore[method-assign]
    return known


def sign(key=KEY, alg: str = "RS256", **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "uploads", "sub": "u1", "iat": now, "exp": now + 300, "nonce": "n1", **claims}
    return jwt.encode({"alg": alg, "kid": "k1"}, {k: v for k, v in body.items() if v is not None}, key)


async def test_a_good_id_token_gives_its_claims():
    assert (await id_token_claims(issuer(), sign(email="a@example.org"), "n1"))["email"] == "a@example.org"


@pytest.mark.parametrize("token, why", [
    (lambda: sign(aud="someone-else"), "aud"),
    (lambda: sign(exp=int(time.time()) - 120), "exp"),
    (lambda: sign(iss="https://evil.example.org"), "iss"),
    (lambda: sign(nonce="another"), "nonce"),
    (lambda: sign(nonce=None), "nonce"),
    (lambda: sign(key=OTHER_KEY), "signature"),
    (lambda: sign(key=OctKey.import_key("secret" * 8), alg="HS256"), "HS256"),
    (lambda: sign(aud=["uploads", "other"]), "azp"),
    (lambda: "not.a.jwt", "not a signed JWT"),
])
async def test_id_tokens_failing_a_check_are_refused(token, why):
    with pytest.raises(InvalidToken, match=why):
        await id_token_claims(issuer(), token(), "n1")


async def test_access_tokens_need_the_configured_audience_and_no_nonce():
    good = sign(aud="api://uploads", nonce=None)
    assert (await access_token_claims(issuer(), good))["sub"] == "u1"
    with pytest.raises(InvalidToken):
        await access_token_claims(issuer(), sign(aud="uploads", nonce=None))  # the client id: an ID token's
    with pytest.raises(InvalidToken, match="ID token"):
        await access_token_claims(issuer(), sign(aud="api://uploads"))


def test_allowed_rules():
    claims = {"groups": ["admins", "staff"], "email": "a@Example.org", "email_verified": True, "tier": 2}
    assert Rule("groups", "admins").admits(claims) and not Rule("groups", "ops").admits(claims)
    assert Rule("email_domain", "example.org").admits(claims)
    assert not Rule("email_domain", "example.org").admits({**claims, "email_verified": False})
    assert Rule("tier", "2").admits(claims) and not Rule("missing", "x").admits(claims)


def start(**plugin_settings: str):
    return create_app(Settings(secret_key="test-secret-key-0123456789", plugin_settings=plugin_settings))


@pytest.mark.parametrize("settings, message", [
    ({"OIDC_PROVIDERS": "corp"}, "OIDC_CORP_ISSUER"),
    ({"OIDC_PROVIDERS": "corp", "OIDC_CORP_ISSUER": ISSUER}, "OIDC_CORP_CLIENT_ID"),
    ({"OIDC_PROVIDERS": "corp", "OIDC_CORP_ISSUER": "id.example.org", "OIDC_CORP_CLIENT_ID": "x"}, "not an http"),
    ({"OIDC_PROVIDERS": "corp", "OIDC_CORP_ISSUER": "http://id.example.org", "OIDC_CORP_CLIENT_ID": "x"}, "https"),
    ({"OIDC_PROVIDERS": "corp", "OIDC_CORP_ISSUER": ISSUER, "OIDC_CORP_CLIENT_ID": "x",
      "OIDC_CORP_ALLOWED": "admins"}, "claim=value"),
    ({"OIDC_PROVIDERS": "corp", "OIDC_CORP_ISSUER": ISSUER, "OIDC_CORP_CLIENT_ID": "x",
      "OIDC_CORP_SCOPES": "email"}, "openid"),
    ({"OIDC_PROVIDERS": "Bad-Name"}, "provider name"),
])
def test_misconfigured_providers_refuse_to_start(settings, message):
    with pytest.raises(StartupError, match=message):
        start(**settings)


def test_a_misspelt_provider_setting_is_refused_by_name():
    with pytest.raises(ValueError, match="OIDC_CORP_ISUER"):
        start(OIDC_PROVIDERS="corp", OIDC_CORP_ISUER=ISSUER, OIDC_CORP_CLIENT_ID="x")


def test_a_configured_provider_gets_a_button_without_being_contacted():
    app = start(OIDC_PROVIDERS="corp", OIDC_CORP_ISSUER="https://unreachable.invalid", OIDC_CORP_CLIENT_ID="x",
                OIDC_CORP_TITLE="Corp SSO")
    service = app.extensions["upload_service"]
    provider = service.auth_provider("oidc:corp")
    assert (provider.login_url, provider.title) == ("/login/corp", "Corp SSO")
    assert "/login/corp/authorized" in service.endpoints().values()


async def test_without_providers_the_plugin_is_inert_and_says_so_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="upload_service")
    app = create_app(Settings(secret_key="test-secret-key-0123456789", upload_dir=str(tmp_path)))

    async with app.test_app():
        lines = [record.getMessage() for record in caplog.records if "oidc" in record.getMessage().lower()]
        rules = app.extensions["upload_service"].endpoints().values()

    assert lines == ["plugin oidc: inactive: set OIDC_PROVIDERS (and OIDC_<NAME>_ISSUER, _CLIENT_ID, ...) to sign in "
                     "with OpenID Connect"]
    assert not [rule for rule in rules if rule.startswith("/login/") and rule != "/login/authorized"]
