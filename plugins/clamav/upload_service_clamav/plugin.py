"""The hooks: check the settings at start-up, scan every stored file with clamd before the client's answer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from upload_service import StartupError, StoredFile, UploadRejected, hookimpl

from .clamd import Clamd, ClamdError, StreamTooLarge
from .settings import ClamavSettings

log = logging.getLogger("upload_service.clamav")


@dataclass
class Scanner:
    """clamd, the policy for when it gives no verdict, and the counters on ``/metrics``."""

    clamd: Clamd
    settings: ClamavSettings
    scanned: Any
    infected: Any
    errors: Any

    async def scan(self, file: StoredFile, service: Any) -> dict[str, Any]:
        """Refuse an infected file (422, reason ``malware``); without a verdict, refuse (503, or 413 past
        clamd's ``StreamMaxLength``) when failing closed, keep it and warn when failing open."""
        try:
            async with asyncio.timeout(self.settings.timeout), _reading(service, file.key) as chunks:
                signature = await self.clamd.instream(chunks)
        except (ClamdError, TimeoutError) as error:
            return self._no_verdict(file, error)
        self.scanned.inc()
        if signature is not None:
            self.infected.inc()
            log.warning("malware refused: %s", signature,
                        extra={"signature": signature, "file_id": file.id, "owner": file.owner})
            raise UploadRejected(f"{file.filename!r} contains malware: {signature}", reason="malware")
        return {"clamav": "clean"}

    def _no_verdict(self, file: StoredFile, error: BaseException) -> dict[str, Any]:
        kind = "too_large" if isinstance(error, StreamTooLarge) else \
            "timeout" if isinstance(error, TimeoutError) else "unavailable"
        self.errors.labels(kind).inc()
        why = f"clamd did not answer within {self.settings.timeout:g}s" if kind == "timeout" else str(error)
        if self.settings.fail == "open":
            log.warning("file kept unscanned (CLAMAV_FAIL=open): %s", why,
                        extra={"reason": why, "file_id": file.id, "owner": file.owner})
            return {"clamav": "unscanned"}
        log.error("upload refused, no malware scan: %s", why, extra={"reason": why, "file_id": file.id})
        if kind == "too_large":
            raise UploadRejected("this file is larger than the malware scanner reads (clamd's StreamMaxLength); "
                                 "nothing was kept", status=413, reason="scan_too_large")
        raise UploadRejected("the malware scanner is unavailable; nothing was kept, try again later", status=503,
                             reason="scan_unavailable")


@asynccontextmanager
async def _reading(service: Any, key: str) -> AsyncIterator[AsyncIterator[bytes]]:
    """The stored bytes, closed when the scan stops early (a verdict, a timeout): the storage may hold a handle."""
    chunks = service.storage.read(key)
    try:
        yield chunks
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


def _settings(service: Any) -> ClamavSettings:
    try:
        return service.plugin_settings(ClamavSettings)
    except (ValidationError, ValueError) as error:
        raise StartupError(f"clamav plugin: {error}") from None


def _clamd(settings: ClamavSettings) -> Clamd:
    try:
        return Clamd.from_url(settings.clamd_url or "")
    except ValueError as error:
        raise StartupError(f"CLAMD_URL={settings.clamd_url!r} is not a clamd address: {error}") from None


@hookimpl
def plugin_status(service: Any) -> str:
    settings = _settings(service)
    if not settings.clamd_url:
        return "inactive: set CLAMD_URL (unix:///run/clamav/clamd.ctl or tcp://host:3310) to scan uploads"
    return f"scanning uploads with clamd at {_clamd(settings)} (CLAMAV_FAIL={settings.fail})"


@hookimpl
async def startup(service: Any) -> None:
    """Inert without ``CLAMD_URL``; a malformed one refuses to start; an unreachable clamd is only warned of
    (it may start after the service; uploads meanwhile follow ``CLAMAV_FAIL``)."""
    settings = _settings(service)
    if not settings.clamd_url:
        return
    clamd = _clamd(settings)
    if settings.timeout <= 0:
        raise StartupError("CLAMAV_TIMEOUT must be longer than 0 seconds")
    service.state("clamav")["scanner"] = Scanner(
        clamd, settings,
        scanned=service.counter("clamav_scanned", "files clamd scanned"),
        infected=service.counter("clamav_infected", "files refused because clamd found malware"),
        errors=service.counter("clamav_errors", "files clamd gave no verdict on", ("kind",)))
    try:
        async with asyncio.timeout(min(settings.timeout, 10)):
            version = await clamd.version()
    except (ClamdError, TimeoutError) as error:
        why = str(error) or "timeout"
        log.warning("clamd at %s does not answer yet: %s", clamd, why,
                    extra={"clamd": str(clamd), "error": why, "fail": settings.fail})
    else:
        log.info("scanning uploads with clamd at %s (%s, CLAMAV_FAIL=%s)", clamd, version, settings.fail,
                 extra={"clamd": str(clamd), "version": version, "fail": settings.fail})


@hookimpl(tryfirst=True)
async def process_upload(file: StoredFile, service: Any) -> dict[str, Any] | None:
    """Before other plugins read the file (an image decoder should never see malware)."""
    scanner = service.state("clamav").get("scanner")
    return None if scanner is None else await scanner.scan(file, service)
