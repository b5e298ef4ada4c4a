"""The plugin's hooks: register the ``redis`` locker, and check Redis answers before the service serves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from upload_service import StartupError, hookimpl

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .locker import RedisLocker

# redis-py is imported only when LOCKER=redis is chosen, so an installed but unused plugin costs no memory.


def _client(service: Any) -> Redis:
    from redis.asyncio import Redis

    if not service.settings.redis_url:
        raise StartupError("LOCKER=redis needs REDIS_URL (for example redis://127.0.0.1:6379/0)")
    return Redis.from_url(service.settings.redis_url)


def make_locker(service: Any) -> RedisLocker:
    """The factory ``LOCKER=redis`` picks; one connection pool per service instance."""
    from .locker import RedisLocker
    from .settings import RedisLockerSettings

    settings = service.plugin_settings(RedisLockerSettings)
    return RedisLocker(_client(service), prefix=settings.key_prefix, ttl=settings.lock_ttl, wait=settings.lock_wait)


@hookimpl
def register_lockers(register, service) -> None:
    register("redis", make_locker)


@hookimpl
async def startup(service) -> None:
    """Refuse to start when ``LOCKER=redis`` and Redis cannot be reached."""
    if service.settings.locker != "redis":
        return
    from redis.exceptions import RedisError

    client = _client(service)
    try:
        await client.ping()
    except RedisError as error:
        raise StartupError(f"Redis at {service.settings.redis_url} cannot be reached: {error}") from error
    finally:
        await client.aclose()
