"""Settings, validated at start-up: given as keywords by a host app, or read from the environment and ``.env``.

``Settings(**values)`` holds the values given and the defaults, nothing else: a host app's configuration does not
change with the environment it runs in, and a misspelled keyword is an error. ``Settings.from_env()`` reads the
environment and ``.env`` (the environment wins), as the ``upload-service`` command and ``create_app()`` do.
A plugin's own settings (``Settings.for_plugin``) are read the same way as the service's.

pydantic-settings does the reading, typing and error messages; this module adds the two unit formats operators
expect, sizes (``5GiB``) and durations (``24h``), and the choice of sources.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, Field, PrivateAttr, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

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

PluginModel = TypeVar("PluginModel", bound=BaseSettings)
ENV_FILE = ".env"

# BaseSettings' own keyword options (``_env_file``, ``_secrets_dir`` ...): not settings, so never "unknown".
_SOURCE_OPTIONS = frozenset(name for name in inspect.signature(BaseSettings.__init__).parameters
                            if name.startswith("_"))


def _unknown(names: list[str], known: Iterable[str]) -> str:
    """``setting 'storage_backnd' (did you mean 'storage_backend'?)``: each unknown name with its close match."""
    known = list(known)
    described = []
    for name in names:
        close = get_close_matches(name.lower(), [option.lower() for option in known], n=1)
        match = next((option for option in known if close and option.lower() == close[0]), None)
        described.append(f"{name!r} (did you mean {match!r}?)" if match else repr(name))
    return f"setting{'s' if len(names) > 1 else ''} {', '.join(described)}"


class Settings(BaseSettings):
    """Every setting of the service; ``env.example`` documents each with its default.

    ``Settings(**values)``: only these values and the defaults (an unknown keyword is a ``TypeError`` naming it).
    ``Settings.from_env(**overrides)``: the environment and ``.env`` too. ``plugin_settings`` gives plugins their
    own settings by the names an operator would put in the environment (``{"S3_BUCKET": "uploads"}``).
    """

    model_config = SettingsConfigDict(env_file=ENV_FILE, extra="ignore", case_sensitive=False)

    _from_environment: bool = PrivateAttr(False)
    _env_file: Any = PrivateAttr(None)
    _plugin_values: dict[str, Any] = PrivateAttr(default_factory=dict)

    secret_key: SecretStr | None = None
    dev: bool = False
    dev_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    upload_dir: Path = Path("./uploads")
    storage_backend: str = "local"
    # full: every upload flushed to disk before its 201 (flushes shared by uploads that finish together);
    # relaxed: write-back left to the kernel (a power cut may lose recent uploads, never shows half of one)
    durability: Literal["full", "relaxed"] = "full"
    max_upload_size: Size = parse_size("5GiB")
    max_json_upload_size: Size = parse_size("32MiB")
    max_files_per_request: int = Field(1000, ge=1)  # files in one JSON or multipart request, parts of one tus final
    upload_idle_timeout: Duration = 60.0
    storage_timeout: Duration = parse_duration("5m")
    keep_alive_timeout: Duration = 75.0  # idle keep-alive connections, and the time to send a request head
    # Bytes/s a body must keep up while the server waits for it, or 408: each second of waiting costs a second of
    # credit and each UPLOAD_MIN_RATE bytes earn one back, the credit starting at and never exceeding
    # UPLOAD_IDLE_TIMEOUT (a window: a body sent fast earlier cannot then trickle for long); 0: off
    upload_min_rate: Size = parse_size("1KiB")
    temp_upload_ttl: Duration = parse_duration("24h")
    cleanup_interval: Duration = parse_duration("10m")
    tus_upload_ttl: Duration = parse_duration("24h")
    idempotency_ttl: Duration = parse_duration("24h")  # how long an Idempotency-Key's answer is kept and replayed
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
    # the origin people reach the service at (https://uploads.example.org): OAuth callback URLs are built on it,
    # never on a client's Host header; empty: a trusted proxy's X-Forwarded-Host, or a loopback Host (a local run)
    public_url: str = ""
    user_quota_bytes: Limit = 0
    user_quota_files: Count = 0
    max_concurrent_uploads: Count = 0
    rate_limit: str = ""
    rate_limit_per_address: str = ""
    allowed_content_types: str = ""
    denied_content_types: str = ""

    def __init__(self, *, plugin_settings: Mapping[str, Any] | None = None, **values: Any) -> None:
        fields = type(self).model_fields
        unknown = [name for name in values if name.lower() not in fields and name not in _SOURCE_OPTIONS]
        if unknown:
            raise TypeError(f"{type(self).__name__} has no {_unknown(unknown, fields)}")
        core = [name for name in plugin_settings or {} if name.lower() in fields]
        if core:
            raise ValueError(f"plugin_settings holds the service's own {', '.join(map(repr, core))}: pass "
                             f"{', '.join(name.lower() + '=...' for name in core)} to {type(self).__name__} instead")
        super().__init__(**values)
        self._plugin_values = dict(plugin_settings or {})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the keywords given: ``from_env`` reads the environment and ``.env`` and passes what it found."""
        return (init_settings,)

    @classmethod
    def from_env(cls, *, _env_file: str | Path | None = ENV_FILE, **overrides: Any) -> Self:
        """Read the environment and ``.env`` (``_env_file``; the environment wins, ``overrides`` win over both).
        Names that are no setting are ignored there: an environment is full of other programs' variables."""
        settings = cls(**{**_environment_values(cls, _env_file), **overrides})
        settings._from_environment, settings._env_file = True, _env_file
        return settings

    @property
    def from_environment(self) -> bool:
        """Whether these settings were read from the environment (``from_env``), so plugins' settings are too."""
        return self._from_environment

    def for_plugin(self, model: type[PluginModel]) -> PluginModel:
        """A plugin's own settings, ``model`` (a pydantic-settings ``BaseSettings``, usually with an ``env_prefix``),
        read as these settings were: from the environment and ``.env`` when they were (the ``plugin_settings`` given
        winning), else from nothing but the ``plugin_settings`` given. ``service.plugin_settings(model)`` is this,
        read once per service."""
        values = _plugin_values(model, self._plugin_values)
        if self._from_environment:
            values = {**_environment_values(model, self._env_file), **values}
        plugin_settings = model.__new__(model)
        # BaseSettings.__init__ gathers values from its sources and hands them to BaseModel.__init__; calling that
        # directly validates these values alone, with the model's own validators, and reads nothing more.
        BaseModel.__init__(plugin_settings, **values)
        return plugin_settings

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
                     "idempotency_ttl", "storage_timeout", "keep_alive_timeout")
    @classmethod
    def _positive_duration(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0 seconds")
        return value

    @field_validator("public_url")
    @classmethod
    def _origin(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value:
            return ""
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 (a malformed port raises here)
        except ValueError:
            parts = parts._replace(netloc="")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment \
                or "@" in parts.netloc:
            raise ValueError("must be the http(s) origin people reach the service at, such as "
                             "https://uploads.example.org (no path)")
        return value

    @field_validator("durability", mode="before")
    @classmethod
    def _durability(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

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


def _keyword(name: str, field: FieldInfo) -> str:
    """The name a field is given by: its alias when it has one (pydantic-settings reads that, unprefixed)."""
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return alias or name


def _environment_values(model: type[BaseSettings], env_file: str | Path | None) -> dict[str, Any]:
    """What the environment and ``env_file`` say about ``model``'s fields, as pydantic-settings reads them (the
    environment wins). Other names are left out, whatever the model's ``extra``: they are other programs'."""
    keywords = {_keyword(name, field) for name, field in model.model_fields.items()}
    found = {**DotEnvSettingsSource(model, env_file=env_file)(), **EnvSettingsSource(model)()}
    return {name: value for name, value in found.items() if name in keywords}


def _plugin_values(model: type[BaseSettings], given: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``given`` (by environment name, ``S3_BUCKET``) that are ``model``'s, by field name. A name
    with the model's prefix that names none of its fields is a misspelling: refused, naming it."""
    config = model.model_config
    prefix = config.get("env_prefix") or ""
    sensitive = bool(config.get("case_sensitive"))

    def fold(name: str) -> str:
        return name if sensitive else name.lower()

    fields: dict[str, str] = {}  # folded environment name -> keyword for the model
    names: list[str] = []
    for name, field in model.model_fields.items():
        keyword = _keyword(name, field)
        env_name = keyword if keyword != name else prefix + name  # pydantic-settings: an alias is used as it is
        fields[fold(env_name)] = keyword
        names.append(env_name if sensitive else env_name.upper())
    values = {fields[fold(key)]: value for key, value in given.items() if fold(key) in fields}
    unknown = [key for key in given if fold(key) not in fields and prefix and fold(key).startswith(fold(prefix))]
    if unknown:
        raise ValueError(f"plugin_settings: {model.__name__} has no {_unknown(unknown, names)}")
    return values
