"""The default ``github`` auth plugin: GitHub sign-in in the browser and GitHub tokens for the API.

Active when ``GITHUB_CLIENT_ID`` and ``GITHUB_CLIENT_SECRET`` are both set. ``GITHUB_URL``/``GITHUB_API_URL``
point it at GitHub Enterprise (or a test double); ``ALLOWED_USERS``/``ALLOWED_ORGS`` limit who may enter.
Built on the public hook API only.
"""

from __future__ import annotations

import logging

from upload_service import hookimpl

from .config import GitHubConfig, check_settings
from .oauth import SignInFlow
from .provider import GitHubProvider

log = logging.getLogger("upload_service.github")


@hookimpl
def startup(service) -> None:
    """Refuse a half-configured OAuth app; say so when access rules are set but GitHub sign-in is off, or when
    GitHub sign-in is on without PUBLIC_URL."""
    check_settings(service.settings)
    settings = service.settings
    if GitHubConfig.from_settings(settings) is None:
        if settings.allowed_users or settings.allowed_orgs:
            log.warning("ALLOWED_USERS/ALLOWED_ORGS are set but GitHub sign-in is off (no GITHUB_CLIENT_ID/SECRET)")
    elif not settings.public_url:
        log.warning("PUBLIC_URL is not set: GitHub sign-in works only where the callback address is known without "
                    "it (through a proxy in FORWARDED_ALLOW_IPS that sends X-Forwarded-Host, or on a loopback "
                    "address); set PUBLIC_URL to the address people use, e.g. https://uploads.example.org")


@hookimpl(trylast=True)
def register_auth_providers(register, service) -> None:
    """Registered last, so static and dev tokens are recognised before any GitHub call."""
    config = GitHubConfig.from_settings(service.settings)
    if config is not None:
        register(GitHubProvider(service, config))


@hookimpl
def register_routes(blueprint, service) -> None:
    provider = service.auth_provider("github")
    if isinstance(provider, GitHubProvider):
        SignInFlow(service, provider).register(blueprint)
