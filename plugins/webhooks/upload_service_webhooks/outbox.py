"""The outbox: events kept in the service's storage until every endpoint took them, and the dead letters.

``webhooks/outbox/<id>`` holds an event's body (the exact bytes signed on every attempt); its metadata holds
the delivery state of each endpoint that wants it: ``{"id", "type", "created", "claimed_until", "endpoints":
{url: {"attempts", "next", "error", "dead"}}}``. An endpoint that still fails once ``WEBHOOK_RETRY_FOR`` has
passed since the event is marked dead; once no endpoint is pending the entry is deleted, or moved to
``webhooks/dead/<id>`` with its dead endpoints, where the operator lists and replays it
(``upload-service-webhooks``). Several instances share the storage: an instance claims an entry (a lease in
its metadata, written under ``service.exclusive``) before it sends it, so one instance delivers it; a crash
lets the lease lapse and another instance sends it again: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx2

from upload_service import LockBusy, ObjectExists, ObjectNotFound, StoredObject, iso, random_hex, tls_context

from . import signing
from .config import Endpoint, WebhookSettings

log = logging.getLogger("upload_service.webhooks")

OUTBOX, DEAD = "webhooks/outbox/", "webhooks/dead/"
PAGE = 500
CONCURRENCY = 32
STOP_WAIT = 2.0  # seconds a stop gives cut deliveries to give their claims back (else their leases lapse)
LEASE_MARGIN = 5.0  # seconds a claim outlives its attempts' timeout: then a crashed sender's entry is sent again


def http_client(timeout: float) -> httpx2.AsyncClient:
    """The client of one delivery loop or replay, on the process's one TLS context (not one of its own each)."""
    return httpx2.AsyncClient(timeout=timeout, follow_redirects=False, verify=tls_context())


def event_body(event_type: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "timestamp": iso(datetime.now(UTC)), "data": data},
                      separators=(",", ":")).encode()


class Outbox:
    """One service's outbox: ``add`` from the hooks, ``run`` in the background task, ``replay`` from the CLI."""

    def __init__(self, service: Any, settings: WebhookSettings, endpoints: list[Endpoint]) -> None:
        self.service, self.storage, self.settings = service, service.storage, settings
        self.endpoints = {endpoint.url: endpoint for endpoint in endpoints}
        self.wake = asyncio.Event()
        self.running: dict[str, asyncio.Task[None]] = {}
        self.slots = asyncio.Semaphore(CONCURRENCY)
        self.http: httpx2.AsyncClient | None = None
        self.deliveries = service.counter(
            "webhook_deliveries", "Webhook delivery attempts, by endpoint and outcome (delivered, failed, "
            "dead_lettered)", ("endpoint", "outcome"))

    # -- writing events -----------------------------------------------------------------------------------

    async def add(self, event_type: str, data: dict[str, Any]) -> str | None:
        """Keep the event in storage for every endpoint that wants it (before the hook returns); None if none."""
        wanted = [endpoint for endpoint in self.endpoints.values() if endpoint.wants(event_type)]
        if not wanted:
            return None
        entry_id = f"{time.time_ns():x}{random_hex(6)}"  # ascending: the listing gives the oldest first
        now = time.time()
        state = {"id": f"msg_{entry_id}", "type": event_type, "created": now, "claimed_until": 0,
                 "endpoints": {e.url: {"attempts": 0, "next": now, "error": None, "dead": False} for e in wanted}}
        await self._write(OUTBOX + entry_id, event_body(event_type, data), state)
        self.wake.set()
        return entry_id

    async def _write(self, key: str, body: bytes, state: dict[str, Any]) -> None:
        async with self.storage.writer() as writer:
            await writer.write(body)
            await writer.finish()
            await writer.commit(key, state)

    # -- delivering -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """The background task: send what is due, then sleep until the next is due, an event is added here, or
        ``WEBHOOK_POLL_INTERVAL`` passes (for events other instances added)."""
        async with http_client(self.settings.timeout) as self.http:
            try:
                while True:
                    self.wake.clear()
                    due = await self.send_due()
                    delay = self.settings.poll_interval if due is None else max(0.0, due - time.time())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), min(delay, self.settings.poll_interval))
            finally:  # a stop waits for no receiver and no lock: what is cut is sent again (at least once)
                for task in self.running.values():
                    task.cancel()
                if self.running:
                    await asyncio.wait(list(self.running.values()), timeout=STOP_WAIT)

    async def send_due(self) -> float | None:
        """Start sending the due entries not already being sent, oldest first and a bounded number at once (a
        backlog of days makes no task per entry); return when the next one falls due."""
        now, soonest = time.time(), None
        async for stored in self._listing(OUTBOX):
            entry_id = stored.key.removeprefix(OUTBOX)
            due = self.next_due(stored.metadata)
            if due is None or entry_id in self.running:
                continue
            if due <= now:
                if len(self.running) >= 2 * CONCURRENCY:
                    return None  # enough under way; each that ends wakes the loop for the next
                task = asyncio.create_task(self._send_in_slot(stored.key))
                self.running[entry_id] = task
                task.add_done_callback(functools.partial(self._done, entry_id))
            else:
                soonest = due if soonest is None else min(soonest, due)
        return soonest

    def _done(self, entry_id: str, _: asyncio.Task[None]) -> None:
        self.running.pop(entry_id, None)
        self.wake.set()  # a retry may now be due sooner than the loop's sleep

    async def _listing(self, prefix: str) -> Any:
        after = None
        while True:
            page = await self.storage.list(prefix, start_after=after, limit=PAGE)
            for stored in page:
                yield stored
            if len(page) < PAGE:
                return
            after = page[-1].key

    async def _send_in_slot(self, key: str) -> None:
        async with self.slots:
            try:
                await self.send(key)
            except (LockBusy, ObjectNotFound):
                pass  # another instance has it
            except Exception:
                log.exception("webhook delivery of %s failed unexpectedly", key)

    async def send(self, key: str) -> dict[str, str]:
        """Claim the entry, send it to each due endpoint, record the outcomes; returns ``{url: outcome}``."""
        claimed = await self._claim(key)
        if claimed is None:
            return {}
        state, due = claimed
        try:
            body = b"".join([chunk async for chunk in self.storage.read(key)])
            errors = await asyncio.gather(*(self._post(self.endpoints[url], state["id"], body) for url in due))
        except asyncio.CancelledError:  # the service stops: the next start sends it at once, not after the lease
            with contextlib.suppress(Exception):
                async with asyncio.timeout(STOP_WAIT):
                    await self._unclaim(key)
            raise
        return await self._record(key, dict(zip(due, errors, strict=True)))

    async def _unclaim(self, key: str) -> None:
        async with self.service.exclusive("webhooks", key.rsplit("/", 1)[1]):
            stored = await self.storage.stat(key)
            if stored is not None:
                await self.storage.update_metadata(key, {**stored.metadata, "claimed_until": 0})

    async def _claim(self, key: str) -> tuple[dict[str, Any], list[str]] | None:
        async with self.service.exclusive("webhooks", key.rsplit("/", 1)[1]):
            stored = await self.storage.stat(key)
            now = time.time()
            if stored is None or stored.metadata.get("claimed_until", 0) > now:
                return None
            state = stored.metadata
            due = [url for url, endpoint in state["endpoints"].items()
                   if not endpoint["dead"] and endpoint["next"] <= now and url in self.endpoints]
            if not due:
                return None
            state["claimed_until"] = now + self.settings.timeout + LEASE_MARGIN
            await self.storage.update_metadata(key, state)
            return state, due

    async def _post(self, endpoint: Endpoint, message_id: str, body: bytes) -> str | None:
        """One attempt: None when the endpoint took it (2xx), else what went wrong."""
        assert self.http is not None
        try:
            answer = await self.http.post(endpoint.url, content=body,
                                          headers=signing.headers(endpoint.secret, message_id, int(time.time()),
                                                                  body))
        except httpx2.HTTPError as error:
            return f"{type(error).__name__}: {error}"[:300]
        return None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"

    async def _record(self, key: str, errors: dict[str, str | None]) -> dict[str, str]:
        outcomes = {}
        async with self.service.exclusive("webhooks", key.rsplit("/", 1)[1]):
            stored = await self.storage.stat(key)
            if stored is None:
                return {}
            state, now = stored.metadata, time.time()
            for url, error in errors.items():
                label = self.endpoints[url].label
                if error is None:
                    del state["endpoints"][url]
                    outcomes[url] = "delivered"
                    continue
                endpoint = state["endpoints"][url]
                endpoint["attempts"] += 1
                endpoint["error"] = error
                delay = min(self.settings.backoff * 2 ** (endpoint["attempts"] - 1), self.settings.backoff_max)
                if now - state["created"] >= self.settings.retry_for:
                    endpoint["dead"] = True
                    outcomes[url] = "dead_lettered"
                    log.warning("webhook %s to %s dead-lettered after %d attempts: %s", state["id"], label,
                                endpoint["attempts"], error)
                else:
                    endpoint["next"] = now + delay
                    outcomes[url] = "failed"
                self.deliveries.labels(label, "failed").inc()
            for url, outcome in outcomes.items():
                if outcome != "failed":
                    self.deliveries.labels(self.endpoints[url].label, outcome).inc()
            state["claimed_until"] = 0
            await self._settle(key, stored, state)
        return outcomes

    async def _settle(self, key: str, stored: StoredObject, state: dict[str, Any]) -> None:
        """Keep the entry while an endpoint is pending; else delete it, or move it to the dead letters."""
        if any(not endpoint["dead"] for endpoint in state["endpoints"].values()):
            await self.storage.update_metadata(key, state)
        elif state["endpoints"]:
            state["dead_at"] = time.time()
            await self.storage.move(key, DEAD + key.removeprefix(OUTBOX), state)
        else:
            await self.storage.delete(key)

    def next_due(self, state: dict[str, Any]) -> float | None:
        """When the entry's next attempt falls due (its claim's end while another instance holds it); None when
        nothing is pending for an endpoint configured here."""
        pending = [endpoint["next"] for url, endpoint in state.get("endpoints", {}).items()
                   if not endpoint["dead"] and url in self.endpoints]
        if not pending:
            return None
        return float(max(min(pending), state.get("claimed_until", 0)))

    # -- the operator's dead letters --------------------------------------------------------------------------

    async def dead_letters(self) -> list[dict[str, Any]]:
        return [{"entry": stored.key.removeprefix(DEAD), **stored.metadata} async for stored in self._listing(DEAD)]

    async def replay(self, entry_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """Put dead letters back in the outbox for their (still configured) endpoints, with a fresh
        ``WEBHOOK_RETRY_FOR``, and send each once now; what fails stays in the outbox for the service to retry."""
        results: dict[str, dict[str, str]] = {}
        async with http_client(self.settings.timeout) as self.http:
            for entry_id in entry_ids:
                stored = await self.storage.stat(DEAD + entry_id)
                if stored is None:
                    results[entry_id] = {"error": "no such dead letter"}
                    continue
                state, now = stored.metadata, time.time()
                state["endpoints"] = {url: {"attempts": 0, "next": now, "error": None, "dead": False}
                                      for url in state["endpoints"] if url in self.endpoints}
                if not state["endpoints"]:
                    results[entry_id] = {"error": "none of its endpoints is configured any more"}
                    continue
                state.update(created=now, claimed_until=0)
                state.pop("dead_at", None)
                try:
                    await self.storage.move(DEAD + entry_id, OUTBOX + entry_id, state)
                except (ObjectExists, ObjectNotFound):
                    results[entry_id] = {"error": "already replayed"}
                    continue
                results[entry_id] = await self.send(OUTBOX + entry_id)
        return results

