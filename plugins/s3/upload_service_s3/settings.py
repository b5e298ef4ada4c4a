"""The plugin's own settings (``S3_*``), read through ``service.plugin_settings``: from the environment and ``.env``
like the core's, or from a host app's ``Settings(plugin_settings={"S3_BUCKET": ...})``."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from upload_service import Duration, parse_duration


class S3Settings(BaseSettings):
    """``S3_BUCKET`` is required; credentials come from the standard AWS variables and chain, never from here."""

    model_config = SettingsConfigDict(env_prefix="S3_", env_file=".env", extra="ignore", case_sensitive=False)

    bucket: str | None = None
    endpoint_url: str | None = None
    region: str = "us-east-1"
    prefix: str = ""
    presigned_downloads: bool = False
    presigned_ttl: Duration = parse_duration("5m")
    staging_timeout: Duration = parse_duration("30s")  # the journal entries' lease: see journal.py
    max_attempts: int = Field(5, ge=1, le=20)  # per S3 request, retries with backoff included (botocore standard)

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_folder(cls, value: str) -> str:
        """``uploads`` and ``uploads/`` mean the same; the empty prefix is the bucket's root."""
        value = value.strip("/")
        return f"{value}/" if value else ""

    @field_validator("endpoint_url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None
