"""Client addresses behind a reverse proxy: trust ``X-Forwarded-For``/``-Proto``/``-Host`` only from
``FORWARDED_ALLOW_IPS``; and the public origin of the service, which never comes from a client's ``Host`` alone.

Anyone can send ``X-Forwarded-For``; only a proxy we run may set it. When the connection comes from a trusted
address, the client is the right-most address in ``X-Forwarded-For`` that is not itself a trusted proxy (so a
value the client made up, which sits further left, is never used), the scheme comes from ``X-Forwarded-Proto``
and the host the browser asked for from ``X-Forwarded-Host`` (else the ``Host`` the proxy passed on). Otherwise
the headers are ignored and the peer address stays the client.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from quart import Request

PUBLIC_HOST = "upload_service.public_host"  # scope key: the host a trusted proxy says the browser asked for

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: list[str]) -> list[Network] | None:
    """``["10.0.0.0/8", "127.0.0.1"]`` -> networks; ``["*"]`` -> None (trust every peer)."""
    if "*" in value:
        return None
    return [ipaddress.ip_network(item, strict=False) for item in value]


class TrustedProxies:
    """ASGI middleware that rewrites ``scope["client"]`` and ``scope["scheme"]`` for trusted proxies only."""

    def __init__(self, app: Any, networks: list[Network] | None) -> None:
        self.app = app
        self.networks = networks

    def trusted(self, address: str) -> bool:
        if self.networks is None:
            return True
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and self.trusted(client[0]):
            headers = {name.lower(): value.decode("latin-1") for name, value in scope["headers"]
                       if name.lower() in (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"host")}
            scope = dict(scope)
            hops = [hop.strip() for hop in headers.get(b"x-forwarded-for", "").split(",") if hop.strip()]
            for hop in reversed(hops):
                if not self.trusted(hop) or hop == hops[0]:
                    scope["client"] = (hop, 0)
                    break
            proto = headers.get(b"x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]
            host = clean_host(headers.get(b"x-forwarded-host", "").split(",")[0] or headers.get(b"host", ""))
            if host:
                scope[PUBLIC_HOST] = host
        await self.app(scope, receive, send)


def clean_host(value: str) -> str | None:
    """``host[:port]`` rebuilt from its parsed parts (lowercase, IPv6 in brackets), or None when it is not one."""
    value = value.strip()
    if not value or any(char in value for char in "/?#@\\ "):
        return None
    try:
        parts = urlsplit(f"//{value}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return name if port is None else f"{name}:{port}"


def is_loopback(host: str) -> bool:
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def public_origin(request: Request, public_url: str) -> str | None:
    """The scheme and host the service's users reach it at: ``PUBLIC_URL`` when set, else what a trusted proxy
    forwarded, else the request's own ``Host`` only when that is a loopback name (a local run, where nobody else
    is involved). None otherwise: a ``Host`` header that only the client vouches for decides nothing."""
    if public_url:
        return public_url
    vouched = request.scope.get(PUBLIC_HOST)
    if vouched:
        return f"{request.scheme}://{vouched}"
    host = clean_host(request.headers.get("Host", ""))
    return f"{request.scheme}://{host}" if host and is_loopback(host) else None
