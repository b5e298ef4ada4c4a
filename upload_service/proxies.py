"""Client addresses behind a reverse proxy: trust ``X-Forwarded-For``/``-Proto`` only from ``FORWARDED_ALLOW_IPS``.

Anyone can send ``X-Forwarded-For``; only a proxy we run may set it. When the connection comes from a trusted
address, the client is the right-most address in ``X-Forwarded-For`` that is not itself a trusted proxy (so a
value the client made up, which sits further left, is never used) and the scheme comes from
``X-Forwarded-Proto``. Otherwise the headers are ignored and the peer address stays the client.
"""

from __future__ import annotations

import ipaddress
from typing import Any

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
                       if name.lower() in (b"x-forwarded-for", b"x-forwarded-proto")}
            scope = dict(scope)
            hops = [hop.strip() for hop in headers.get(b"x-forwarded-for", "").split(",") if hop.strip()]
            for hop in reversed(hops):
                if not self.trusted(hop) or hop == hops[0]:
                    scope["client"] = (hop, 0)
                    break
            proto = headers.get(b"x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto if scope["type"] == "http" else {"http": "ws", "https": "wss"}[proto]
        await self.app(scope, receive, send)
