"""The ``oidc`` plugin's hooks: one auth provider, sign-in button and pair of routes per OpenID Provider.

Inert (one line at start-up) unless ``OIDC_PROVIDERS`` names providers; a provider without its issuer or client
id, or with a malformed issuer URL, refuses start-up. Providers are not contacted at start-up (see ``issuer``).
"""

from __future__ import annotations

import logging

from upload_service import hookimpl

from .config import ProviderConfig, read_providers

log = logging.getLogger("upload_service.oidc")


def _configs(service) -> list[ProviderConfig]:
    state = service.state("oidc")
    if "configs" not in state:
        state["configs"] = read_providers(service)
    return state["configs"]


@hookimpl
def plugin_status(service) -> str:
    configs = _configs(service)
    if not configs:
        return "inactive: set OIDC_PROVIDERS (and OIDC_<NAME>_ISSUER, _CLIENT_ID, ...) to sign in with OpenID Connect"
    return "sign-in with " + ", ".join(config.name for config in configs)


@hookimpl
def startup(service) -> None:
    configs = _configs(service)
    if not configs:
        return
    for config in configs:
        log.info("OpenID Connect provider %s: issuer %s%s (discovered at its first use)", config.name, config.issuer,
                 ", JWT access tokens accepted" if config.bearer else "")
    if not service.settings.public_url:
        log.warning("PUBLIC_URL is not set: OpenID Connect sign-in works only where the callback address is known "
                    "without it (a trusted proxy's X-Forwarded-Host, or a loopback address)")


@hookimpl
def register_auth_providers(register, service) -> None:
    if not _configs(service):
        return  # the JOSE and HTTP libraries are imported only when a provider is configured: ~10 MiB inert
    from .provider import OIDCProvider

    for config in _configs(service):
        register(OIDCProvider(service, config))


@hookimpl
def register_routes(blueprint, service) -> None:
    if not _configs(service):
        return
    from .provider import OIDCProvider
    from .signin import SignInFlow

    for config in _configs(service):
        provider = service.auth_provider(f"oidc:{config.name}")
        if isinstance(provider, OIDCProvider):
            SignInFlow(service, provider).register(blueprint)
