"""The GitHub plugin's settings, read once from the service's settings and checked at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from upload_service import Settings, StartupError


@dataclass(frozen=True)
class GitHubConfig:
    """Where GitHub lives, the OAuth app's credentials, who may enter, and how long token answers are reused."""

    client_id: str
    client_secret: str
    url: str
    api_url: str
    token_cache_ttl: float
    allowed_users: frozenset[str]
    allowed_orgs: frozenset[str]

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/login/oauth/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.url}/login/oauth/access_token"

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubConfig | None:
        """The configuration when the OAuth app is set up (both id and secret), else None: the plugin stays off."""
        secret = settings.github_client_secret.get_secret_value() if settings.github_client_secret else ""
        if not settings.github_client_id or not secret:
            return None
        return cls(
            client_id=settings.github_client_id,
            client_secret=secret,
            url=settings.github_url.rstrip("/"),
            api_url=settings.github_api_url.rstrip("/"),
            token_cache_ttl=settings.github_token_cache_ttl,
            allowed_users=frozenset(settings.allowed_user_logins),
            allowed_orgs=frozenset(settings.allowed_org_logins),
        )


def check_settings(settings: Settings) -> None:
    """Refuse to start on a half-configured OAuth app or a GitHub URL that is not an http(s) URL."""
    has_id = bool(settings.github_client_id)
    has_secret = bool(settings.github_client_secret and settings.github_client_secret.get_secret_value())
    if has_id != has_secret:
        missing = "GITHUB_CLIENT_SECRET" if has_id else "GITHUB_CLIENT_ID"
        raise StartupError(f"GitHub sign-in is half configured: set {missing} too (or neither)")
    for name, value in (("GITHUB_URL", settings.github_url), ("GITHUB_API_URL", settings.github_api_url)):
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise StartupError(f"{name}={value!r} is not an http(s) URL")
