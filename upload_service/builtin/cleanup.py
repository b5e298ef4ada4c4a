"""Cleanup: every ``CLEANUP_INTERVAL``, remove expired temporary uploads and the staging leftovers of crashes.

The periodic task runs the ``sweep`` hook of every plugin (so tus or S3 plugins add their own sweeps);
this plugin's own sweep handles temporary uploads, storage staging, the answers of expired ``Idempotency-Key``s
and the locker's traces of locks nobody holds (the file locker's lock files). ``upload-service cleanup`` runs one pass.
"""

from __future__ import annotations

import asyncio
import logging

from upload_service import hookimpl

log = logging.getLogger("upload_service.cleanup")


@hookimpl
def background_tasks(service):
    async def sweep_periodically() -> None:
        while True:
            removed = await service.sweep()
            if removed:
                log.info("cleanup removed %d expired or abandoned uploads", removed)
            await asyncio.sleep(service.settings.cleanup_interval)

    return [sweep_periodically]


@hookimpl
async def sweep(service) -> int:
    removed = await service.storage.sweep_staging()
    locks = await service.locker.sweep()  # not uploads: logged, not counted
    if locks:
        log.debug("cleanup removed %d lock files nobody held", locks)
    async for file in service.files.expired_temporary():
        if await service.files.delete(file):
            removed += 1
            await service.notify_deleted(file)
    return removed + await service.expire_idempotency_keys()
