"""``WEBHOOK_*`` settings and the endpoints they name, checked at start-up so a typo refuses to start."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from upload_service import Duration, StartupError, parse_duration

EVENTS = ("file.persisted", "file.deleted", "file.expired", "share.downloaded", "request.received")


class WebhookSettings(BaseSettings):
    """Read through ``service.plugin_settings``. The back-off, timeout and poll settings rarely need changing;
    the tests make them small."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_prefix="WEBHOOK_")

    urls: str = ""
    endpoints: str = ""
    secret: SecretStr | None = None
    retry_for: Duration = parse_duration("3d")
    backoff: Duration = parse_duration("1s")  # the first retry's delay, doubling on each failure
    backoff_max: Duration = parse_duration("1h")
    timeout: Duration = parse_duration("10s")  # one delivery attempt
    poll_interval: Duration = parse_duration("5s")  # how often the outbox is read for other instances' events


@dataclass(frozen=True)
class Endpoint:
    url: str
    events: frozenset[str] | None  # None: every event
    secret: bytes

    @property
    def label(self) -> str:
        """The URL without credentials or query (which may carry tokens), for metrics and logs."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events


def parse_secret(value: str, where: str) -> bytes:
    """``whsec_`` + base64, as the Standard Webhooks specification writes secrets."""
    if not value.startswith("whsec_"):
        raise StartupError(f"{where} must be 'whsec_' followed by base64 (a Standard Webhooks secret)")
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise StartupError(f"{where} is not valid base64 after 'whsec_'") from None
    if len(key) < 16:
        raise StartupError(f"{where} is too short: at least 16 bytes of key after 'whsec_' (24 to 64 recommended)")
    return key


def check_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StartupError(f"{where}: {url!r} is not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 (a malformed port raises)
    except ValueError:
        raise StartupError(f"{where}: {url!r} has a malformed port") from None
    return url


def endpoints_from(settings: WebhookSettings) -> list[Endpoint]:
    """Every configured endpoint (empty: the plugin is inert); StartupError naming what is wrong."""
    default = parse_secret(settings.secret.get_secret_value(), "WEBHOOK_SECRET") if settings.secret else None
    raw: list[dict[str, Any]] = [{"url": url.strip()} for url in settings.urls.split(",") if url.strip()]
    if settings.endpoints.strip():
        try:
            listed = json.loads(settings.endpoints)
        except ValueError as error:
            raise StartupError(f"WEBHOOK_ENDPOINTS is not JSON: {error}") from None
        if not isinstance(listed, list) or not all(isinstance(item, dict) for item in listed):
            raise StartupError('WEBHOOK_ENDPOINTS must be a JSON list of {"url", "events", "secret"} objects')
        raw += listed
    endpoints, seen = [], set()
    for number, item in enumerate(raw, 1):
        where = f"webhook endpoint {number}"
        unknown = set(item) - {"url", "events", "secret"}
        if unknown:
            raise StartupError(f"{where}: unknown keys {sorted(unknown)} (url, events, secret)")
        url = check_url(str(item.get("url", "")), where)
        if url in seen:
            raise StartupError(f"{where}: {url!r} is listed twice")
        seen.add(url)
        events = item.get("events")
        if events is not None:
            if not isinstance(events, list) or not set(events) <= set(EVENTS):
                raise StartupError(f"{where}: events must be a list of {', '.join(EVENTS)}")
            events = frozenset(events)
        secret = parse_secret(str(item["secret"]), f"{where}'s secret") if item.get("secret") else default
        if secret is None:
            raise StartupError(f"{where} has no secret: set WEBHOOK_SECRET (whsec_...) or give it a 'secret'")
        endpoints.append(Endpoint(url, events, secret))
    return endpoints
