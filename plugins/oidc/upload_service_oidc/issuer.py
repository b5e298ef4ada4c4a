"""One OpenID Provider as the service sees it: its discovery document and its signing keys, fetched lazily.

Nothing is fetched at start-up: a provider that is down must not stop the service. The discovery document is
fetched at the first sign-in or bearer token (and again on the next one while it fails); the JWKS with it, and
again when a token names a key id the cached set lacks (the provider rotated its keys), at most once per
``OIDC_JWKS_REFRESH_INTERVAL``, so a stream of forged key ids cannot make the service hammer the provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx2
from joserfc.jwk import KeySet

from upload_service import tls_context

from .config import ProviderConfig

log = logging.getLogger("upload_service.oidc")
TIMEOUT = httpx2.Timeout(10.0)


class IssuerUnavailable(Exception):
    """The provider gave no usable answer (unreachable, an error status, a document that does not fit)."""


@dataclass(frozen=True)
class Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None


def http_client() -> httpx2.AsyncClient:
    """A client for one discovery, key fetch or sign-in, on the process's one TLS context."""
    return httpx2.AsyncClient(timeout=TIMEOUT, follow_redirects=False, headers={"User-Agent": "upload-service"},
                              verify=tls_context())


async def get_json(http: httpx2.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        response = await http.get(url, headers={"Accept": "application/json"})
    except httpx2.HTTPError as error:
        raise IssuerUnavailable(f"{type(error).__name__} fetching the {what} from {url}") from None
    if response.status_code != 200:
        raise IssuerUnavailable(f"the {what} at {url} answered {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise IssuerUnavailable(f"the {what} at {url} is not a JSON object")
    return data


class Issuer:
    """The cached metadata and keys of one provider, shared by its sign-in flow and its bearer checks."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._metadata: Metadata | None = None
        self._keys: KeySet | None = None
        self._keys_fetched = 0.0
        self._lock = asyncio.Lock()

    async def metadata(self) -> Metadata:
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    self._metadata = await self._discover()
        return self._metadata

    async def _discover(self) -> Metadata:
        url = f"{self.config.issuer}/.well-known/openid-configuration"
        async with http_client() as http:
            data = await get_json(http, url, "discovery document")
        if data.get("issuer") != self.config.issuer:
            raise IssuerUnavailable(f"the discovery document at {url} names the issuer {data.get('issuer')!r}, not "
                                    f"{self.config.issuer!r} (check {self.config.env_prefix}ISSUER)")
        endpoints = {}
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(data.get(field), str):
                raise IssuerUnavailable(f"the discovery document at {url} has no {field}")
            endpoints[field] = data[field]
        userinfo = data.get("userinfo_endpoint")
        log.info("OpenID Connect provider %s: discovered %s", self.config.name, self.config.issuer)
        return Metadata(issuer=self.config.issuer, userinfo_endpoint=userinfo if isinstance(userinfo, str) else None,
                        **endpoints)

    async def keys(self, kid: str | None) -> KeySet:
        """The provider's keys, fetched again when ``kid`` is not among the cached ones (rate-limited)."""
        if self._keys is not None and (kid is None or _has_kid(self._keys, kid)):
            return self._keys
        async with self._lock:
            stale = self._keys is None or (kid is not None and not _has_kid(self._keys, kid))
            may_fetch = self._keys is None or time.monotonic() - self._keys_fetched >= self.config.jwks_refresh_interval
            if stale and may_fetch:
                self._keys_fetched = time.monotonic()  # a failed try counts too: forged kids never hammer a provider
                try:
                    self._keys = await self._fetch_keys()
                except IssuerUnavailable as error:
                    if self._keys is None:
                        raise
                    log.warning("OpenID Connect provider %s: keeping the cached keys: %s", self.config.name, error)
        assert self._keys is not None
        return self._keys

    async def _fetch_keys(self) -> KeySet:
        if self._metadata is None:  # under the lock already: discover here rather than through metadata()
            self._metadata = await self._discover()
        metadata = self._metadata
        async with http_client() as http:
            data = await get_json(http, metadata.jwks_uri, "JWKS")
        try:
            keys = KeySet.import_key_set({"keys": [key for key in data.get("keys", []) if key.get("use") != "enc"]})
        except (ValueError, TypeError, AttributeError) as error:
            raise IssuerUnavailable(f"the JWKS at {metadata.jwks_uri} cannot be read: {error}") from None
        log.info("OpenID Connect provider %s: fetched %d signing keys", self.config.name, len(keys.keys))
        return keys


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)
