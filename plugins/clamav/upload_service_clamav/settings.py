"""The plugin's settings: ``CLAMD_URL`` (the clamd socket; unset, the plugin is inert), ``CLAMAV_FAIL`` and
``CLAMAV_TIMEOUT``, read through ``service.plugin_settings``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from upload_service import Duration, parse_duration


class ClamavSettings(BaseSettings):
    """What to do when clamd cannot give a verdict: ``closed`` refuses the upload (503), ``open`` keeps it."""

    model_config = SettingsConfigDict(env_prefix="CLAMAV_", env_file=".env", extra="ignore", case_sensitive=False)

    clamd_url: str | None = Field(None, validation_alias="CLAMD_URL")
    fail: Literal["closed", "open"] = "closed"
    timeout: Duration = parse_duration("2m")
