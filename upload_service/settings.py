"""Settings from the environment and ``.env`` (environment wins), validated at start-up.

pydantic-settings does the reading, typing and error messages; this module only adds the two unit formats
operators expect: sizes (``5GiB``) and durations (``24h``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(value: Any) -> int:
    """``5GiB`` -> 5368709120; plain numbers are bytes."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {value!r} (use bytes or a unit: KiB, MiB, GiB, KB, MB, GB)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def parse_duration(value: Any) -> float:
    """``24h`` -> 86400.0; plain numbers are seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(value).lower())
    if not match:
        raise ValueError(f"not a duration: {value!r} (use seconds or a unit: s, m, h, d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(item).strip() for item in value if str(item).strip()]
    return [item.strip() for item in str(value or "").split(",") if item.strip()]


def _zero_when_empty(value: Any) -> Any:
    return 0 if value is None or str(value).strip() == "" else value


Size = Annotated[int, BeforeValidator(parse_size)]
Limit = Annotated[int, BeforeValidator(lambda value: parse_size(_zero_when_empty(value))), Field(ge=0)]
Count = Annotated[int, BeforeValidator(_zero_when_empty), Field(ge=0)]
Duration = Annotated[float, BeforeValidator(parse_duration)]


class Settings(BaseSettings):
    """Every setting of the service; ``env.example`` documents each with its default."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    secret_key: SecretStr | None = None
    dev: bool = False
    dev_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    upload_dir: Path = Path("./uploads")
    storage_backend: str = "local"
    max_upload_size: Size = parse_size("5GiB")
    max_json_upload_size: Size = parse_size("32MiB")
    upload_idle_timeout: Duration = 60.0
    storage_timeout: Duration = parse_duration("5m")
    keep_alive_timeout: Duration = 75.0  # idle keep-alive connections, and the time to send a request head
    upload_min_rate: Size = parse_size("1KiB")  # bytes/s a body must average after UPLOAD_IDLE_TIMEOUT; 0: off
    temp_upload_ttl: Duration = parse_duration("24h")
    cleanup_interval: Duration = parse_duration("10m")
    tus_upload_ttl: Duration = parse_duration("24h")
    ui_tus_threshold: Size = parse_size("8MiB")
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    github_token_cache_ttl: Duration = 60.0
    allowed_users: str = ""
    allowed_orgs: str = ""
    api_tokens: SecretStr = SecretStr("")
    disabled_plugins: str = ""
    plugins: str = ""
    static_url: str = ""
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    locker: str = "file"
    redis_url: str | None = None
    forwarded_allow_ips: str = ""
    user_quota_bytes: Limit = 0
    user_quota_files: Count = 0
    max_concurrent_uploads: Count = 0
    rate_limit: str = ""
    rate_limit_per_address: str = ""
    allowed_content_types: str = ""
    denied_content_types: str = ""

    @field_validator("rate_limit", "rate_limit_per_address")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            try:
                parse_many(value)
            except ValueError:
                raise ValueError("use limits like 100/minute or 10/second;1000/hour") from None
        return value.strip()

    @field_validator("max_upload_size", "max_json_upload_size")
    @classmethod
    def _positive_size(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be larger than 0")
        return value

    @field_validator("temp_upload_ttl", "cleanup_interval", "upload_idle_timeout", "tus_upload_ttl",
                     "storage_timeout", "keep_alive_timeout")
    @classmethod
    def _positive_duration(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0 seconds")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value.upper()

    @property
    def disabled_plugin_names(self) -> list[str]:
        return parse_list(self.disabled_plugins)

    @property
    def trusted_proxies(self) -> list[str]:
        """``FORWARDED_ALLOW_IPS``: addresses or networks of reverse proxies whose X-Forwarded-* are believed."""
        return parse_list(self.forwarded_allow_ips)

    @property
    def plugin_modules(self) -> list[str]:
        return parse_list(self.plugins)

    @property
    def allowed_user_logins(self) -> list[str]:
        return [login.lower() for login in parse_list(self.allowed_users)]

    @property
    def allowed_org_logins(self) -> list[str]:
        return [org.lower() for org in parse_list(self.allowed_orgs)]

    @property
    def static_api_tokens(self) -> dict[str, str]:
        """``login:token,login:token`` -> {token: login}; a malformed entry is a start-up error."""
        tokens: dict[str, str] = {}
        for entry in parse_list(self.api_tokens.get_secret_value()):
            login, sep, token = entry.partition(":")
            if not sep or not login.strip() or len(token.strip()) < 8:
                raise ValueError("API_TOKENS entries must look like login:token, with tokens of 8+ characters")
            tokens[token.strip()] = login.strip()
        return tokens
