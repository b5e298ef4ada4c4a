"""The plugin's settings: ``OIDC_PROVIDERS=name,...`` and, per provider, ``OIDC_<NAME>_*``.

Each provider's settings are a pydantic-settings model of their own (prefix ``OIDC_<NAME>_``), read through
``service.plugin_settings``, so a misspelt ``OIDC_CORP_ISUER`` passed by a host app is refused by name. Provider
names are lower-case letters and digits: they appear in URLs (``/login/<name>``), identities
(``oidc:<name>:<sub>``) and environment names, and no name may be a prefix-with-underscore of another.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings, SettingsConfigDict

from upload_service import Duration, StartupError, parse_duration

NAME = re.compile(r"[a-z][a-z0-9]{0,31}")
RESERVED = {"authorized"}  # /login/authorized is GitHub's callback
DEFAULT_SCOPES = "openid email profile"


class OIDCSettings(BaseSettings):
    """Which providers there are, and how often a provider's JWKS may be fetched again for an unknown key id."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    oidc_providers: str = ""
    oidc_jwks_refresh_interval: Duration = parse_duration("30s")


class ProviderFields(BaseSettings):
    """``OIDC_<NAME>_*``: the fields every provider has (the prefix is set per provider)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    scopes: str = DEFAULT_SCOPES
    title: str = ""
    allowed: str = ""
    bearer: bool = False
    audience: str = ""


@dataclass(frozen=True)
class Rule:
    """One ``claim=value`` of ``_ALLOWED``; ``email_domain`` is the domain of a verified ``email`` claim."""

    claim: str
    value: str

    def admits(self, claims: dict[str, Any]) -> bool:
        if self.claim == "email_domain":
            email = claims.get("email")
            if not isinstance(email, str) or "@" not in email or claims.get("email_verified") is False:
                return False
            return email.rsplit("@", 1)[1].lower() == self.value.lower()
        found = claims.get(self.claim)
        if isinstance(found, list):
            return self.value in [str(item) for item in found]
        return found is not None and str(found) == self.value


@dataclass(frozen=True)
class ProviderConfig:
    """One OpenID Provider as the operator configured it."""

    name: str
    issuer: str
    client_id: str
    client_secret: str
    scopes: str
    title: str
    allowed: tuple[Rule, ...]
    bearer: bool
    audience: str
    jwks_refresh_interval: float

    @property
    def env_prefix(self) -> str:
        return f"OIDC_{self.name.upper()}_"

    @property
    def fingerprint(self) -> str:
        """Names the issuer and the access rules; a session started under others (the operator changed them) ends."""
        rules = ",".join(sorted(f"{rule.claim}={rule.value}" for rule in self.allowed))
        return hashlib.sha256(f"{self.issuer}|{rules}".encode()).hexdigest()[:16]

    def admits(self, claims: dict[str, Any]) -> bool:
        """No ``_ALLOWED`` rules: anyone the provider signs in. Otherwise any one rule that holds lets in."""
        return not self.allowed or any(rule.admits(claims) for rule in self.allowed)


_MODELS: dict[str, type[ProviderFields]] = {}


def _model(name: str) -> type[ProviderFields]:
    """The settings model of provider ``name`` (one class per name, so the service's cache holds it once)."""
    if name not in _MODELS:
        config = SettingsConfigDict(env_prefix=f"OIDC_{name.upper()}_", extra="ignore", case_sensitive=False)
        _MODELS[name] = type(f"OIDC{name.capitalize()}Settings", (ProviderFields,),
                             {"model_config": config, "__module__": __name__})
    return _MODELS[name]


def provider_names(settings: OIDCSettings) -> list[str]:
    names = [name.strip().lower() for name in settings.oidc_providers.split(",") if name.strip()]
    for name in names:
        if not NAME.fullmatch(name) or name in RESERVED:
            raise StartupError(f"OIDC_PROVIDERS: {name!r} is not a usable provider name: use lower-case letters and "
                               "digits, starting with a letter (it becomes /login/<name> and OIDC_<NAME>_*)")
    if len(set(names)) != len(names):
        raise StartupError("OIDC_PROVIDERS names a provider twice")
    return names


def _check_url(variable: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise StartupError(f"{variable}={value!r} is not an http(s) URL (the issuer, e.g. "
                           "https://keycloak.example.org/realms/staff)")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise StartupError(f"{variable}={value!r}: an issuer must use https (plain http only on a loopback address)")
    return value.rstrip("/")


def _rules(variable: str, value: str) -> tuple[Rule, ...]:
    rules = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        claim, sep, wanted = item.partition("=")
        if not sep or not claim.strip() or not wanted.strip():
            raise StartupError(f"{variable}: {item!r} is not claim=value (e.g. groups=admins or "
                               "email_domain=example.org)")
        rules.append(Rule(claim.strip(), wanted.strip()))
    return tuple(rules)


def read_providers(service: Any) -> list[ProviderConfig]:
    """Every configured provider, checked; a StartupError says which setting is missing or wrong."""
    top = service.plugin_settings(OIDCSettings)
    configs = []
    for name in provider_names(top):
        fields = service.plugin_settings(_model(name))
        prefix = f"OIDC_{name.upper()}_"
        for field in ("issuer", "client_id"):
            if not getattr(fields, field).strip():
                raise StartupError(f"OpenID Connect provider {name!r} has no {prefix}{field.upper()}")
        scopes = " ".join(fields.scopes.split())
        if "openid" not in scopes.split():
            raise StartupError(f"{prefix}SCOPES must include openid (it is {scopes!r})")
        configs.append(ProviderConfig(
            name=name, issuer=_check_url(f"{prefix}ISSUER", fields.issuer.strip()), client_id=fields.client_id.strip(),
            client_secret=fields.client_secret, scopes=scopes, title=fields.title or f"Sign in with {name}",
            allowed=_rules(f"{prefix}ALLOWED", fields.allowed), bearer=fields.bearer,
            audience=fields.audience.strip() or fields.client_id.strip(),
            jwks_refresh_interval=top.oidc_jwks_refresh_interval))
    return configs
