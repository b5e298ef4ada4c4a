"""Request rate limits: ``RATE_LIMIT`` per identity and ``RATE_LIMIT_PER_ADDRESS`` per client address.

The counting is the ``limits`` library's sliding-window counter. With ``REDIS_URL`` set the counters live in
Redis, so every worker and every instance behind a load balancer counts into the same window; without it they
live in each worker's memory, and a limit holds per worker (``WORKERS=4`` lets up to four times through).
The client address is the one ``FORWARDED_ALLOW_IPS`` makes trustworthy (``upload_service.proxies``).

Every request to a route of the service counts against its address, authenticated or not (so guessing
tokens is throttled wherever a token or a session is checked: the API, tus, the UI's pages and fragments, the
sign-in routes and callbacks plugins add), except the routes that check no credentials at all (``UNCOUNTED``:
static assets, health and metrics, which probes and scrapers call often). ``service.identify`` counts too, so a
host app's own route that asks who is calling is throttled the same way. A request counts once however many
times it is checked. Every authenticated request counts against its identity; a tus upload costs one request
per PATCH. Over a limit, the answer is 429 with ``Retry-After``. If Redis fails mid-way, requests are let
through and a warning is logged: an outage of the counter store should not become an outage of uploads.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, cast

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from .errors import Problem, StartupError
from .lean_path import ignores_raw_uploads

if TYPE_CHECKING:
    from quart import Request

    from .identity import Identity
    from .service import UploadService

log = logging.getLogger("upload_service.rate_limits")
COUNTED = "upload_service.rate_limited"  # request.scope flag: an identity is counted once per request
ADDRESS_COUNTED = "upload_service.address_counted"  # the same for the client address
UNCOUNTED = frozenset({"static", "healthz", "readyz", "metrics"})  # endpoints that check no credentials


class RateLimits:
    """The rate limits of one service and the counter store they share."""

    def __init__(self, service: UploadService) -> None:
        settings = service.settings
        self.per_identity: list[RateLimitItem] = parse_many(settings.rate_limit) if settings.rate_limit else []
        self.per_address: list[RateLimitItem] = (parse_many(settings.rate_limit_per_address)
                                                 if settings.rate_limit_per_address else [])
        self.redis_url = settings.redis_url
        self.prefix = f"upload-service:rate:{service.name}"
        self._limiter: SlidingWindowCounterRateLimiter | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.per_identity or self.per_address)

    @property
    def shared(self) -> bool:
        """Whether the counters are shared by every worker and instance (Redis) or per worker (memory)."""
        return bool(self.redis_url)

    def _storage(self) -> Any:
        if self.redis_url:
            return storage_from_string(f"async+{self.redis_url}", implementation="redispy", key_prefix=self.prefix,
                                       wrap_exceptions=True)
        return MemoryStorage()

    @property
    def limiter(self) -> SlidingWindowCounterRateLimiter:
        if self._limiter is None:  # made in the serving event loop, on first use
            self._limiter = SlidingWindowCounterRateLimiter(self._storage())
        return self._limiter

    async def open(self) -> None:
        """Refuse to start when the limits are to be shared through a Redis that does not answer."""
        if self.enabled and self.shared and not await self.limiter.storage.check():
            raise StartupError(f"rate limits: Redis at {self.redis_url} does not answer")

    async def check_address(self, request: Request) -> None:
        """Count ``request`` against its client address (once, however often it is checked); 429 over the limit."""
        scope = cast("dict[str, Any]", request.scope)  # ASGI allows extension keys, which its TypedDict does not list
        if self.per_address and not scope.get(ADDRESS_COUNTED):
            scope[ADDRESS_COUNTED] = True
            await self._hit(self.per_address, "address", request.remote_addr or "unknown", "this address")

    async def check_identity(self, identity: Identity, scope: dict[str, Any]) -> None:
        if not scope.get(COUNTED):
            scope[COUNTED] = True
            await self._hit(self.per_identity, "identity", identity.owner_key, "you")

    async def _hit(self, items: list[RateLimitItem], kind: str, key: str, who: str) -> None:
        for item in items:
            try:
                if await self.limiter.hit(item, kind, key):
                    continue
                stats = await self.limiter.get_window_stats(item, kind, key)
            except StorageError:
                log.warning("rate limit store failed; letting the request through", exc_info=True)
                return
            wait = max(1, math.ceil(stats.reset_time - time.time()))
            raise Problem(429, f"too many requests from {who}: the limit is {item}; retry in {wait} s",
                          reason="rate_limited", headers={"Retry-After": str(wait)}, limit=str(item),
                          retry_after=wait)


def register_rate_limits(bp: Any, service: UploadService) -> None:
    """Count every request to the service's routes (but ``UNCOUNTED``) against its client address, before anything
    else: a route a plugin adds (a sign-in callback) is counted without knowing it."""
    if not service.rate_limits.per_address:
        return
    from quart import request

    uncounted = {f"{service.name}.{endpoint}" for endpoint in UNCOUNTED}

    @bp.before_request
    @ignores_raw_uploads  # the lane counts the address itself (``check_address``)
    async def limit_address() -> None:
        if request.endpoint not in uncounted:
            await service.rate_limits.check_address(request)
