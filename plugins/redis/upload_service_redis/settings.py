"""The plugin's own settings (``REDIS_*``, read through ``service.plugin_settings``); ``REDIS_URL`` itself is a core
setting shared by every plugin."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from upload_service import Duration, parse_duration


class RedisLockerSettings(BaseSettings):
    """How long a lock outlives a holder that died, and where the keys live in a shared Redis."""

    model_config = SettingsConfigDict(env_prefix="REDIS_", env_file=".env", extra="ignore", case_sensitive=False)

    lock_ttl: Duration = parse_duration("10s")
    lock_wait: Duration = parse_duration("15s")
    key_prefix: str = "upload-service:"
