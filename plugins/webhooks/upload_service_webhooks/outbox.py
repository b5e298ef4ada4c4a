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
PASS_SPACING = 9.0  # a retry's pass from the start waits this many times the last pass's duration (<= 10% listing)


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
        self.running: dict[str, asyncio.Task[float | None]] = {}
        self.delivering = False  # run() is under way: add() may start deliveries
        self.resume: str | None = None  # a pass cut short for lack of room goes on after this key
        self.soonest: float | None = None  # the soonest time an entry known here falls due
        self.passed, self.pass_took = 0.0, 0.0  # when the last pass from the start ended, and what it took
        self.slots = asyncio.Semaphore(CONCURRENCY)
        self.http: httpx2.AsyncClient | None = None
        self.deliveries = service.counter(
            "webhook_deliveries", "Webhook delivery attempts, by endpoint and outcome (delivered, failed, "
            "dead_lettered)", ("endpoint", "outcome"))

    # -- writing events -----------------------------------------------------------------------------------

    async def add(self, event_type: str, data: dict[str, Any]) -> str | None:
        """Keep the event in storage for every endpoint that wants it (before the hook returns); None if none.
        Then offer it for delivery: it is due now and its key is known, so no pass over the outbox is needed."""
        wanted = [endpoint for endpoint in self.endpoints.values() if endpoint.wants(event_type)]
        if not wanted:
            return None
        entry_id = f"{time.time_ns():x}{random_hex(6)}"  # ascending: the listing gives the oldest first
        now = time.time()
        state = {"id": f"msg_{entry_id}", "type": event_type, "created": now, "claimed_until": 0,
                 "endpoints": {e.url: {"attempts": 0, "next": now, "error": None, "dead": False} for e in wanted}}
        await self._write(OUTBOX + entry_id, event_body(event_type, data), state)
        self._offer(OUTBOX + entry_id)
        return entry_id

    async def _write(self, key: str, body: bytes, state: dict[str, Any]) -> None:
        async with self.storage.writer() as writer:
            await writer.write(body)
            await writer.finish()
            await writer.commit(key, state)

    # -- delivering -----------------------------------------------------------------------------------------
    #
    # What one upload event or one finished delivery costs must not grow with the outbox: a receiver down for
    # hours leaves a backlog of thousands of entries, none due for a while, and listing them all on every event
    # slowed the uploads themselves (same loop, same storage threads). So an event starts its own entry
    # (``_offer``); a finished delivery only reports when its entry falls due again and makes room, which lets a
    # pass cut short for lack of room go on from where it stopped (``resume``) once CONCURRENCY places are free,
    # so one page read refills them all rather than one read per delivery; a pass from the start runs
    # every ``WEBHOOK_POLL_INTERVAL`` (for what other instances wrote) and when the soonest retry known here
    # falls due, never so often that listing takes more than a small share of the loop's time.

    async def run(self) -> None:
        """The background task: start what is due, then sleep until a pass from the start is due or a delivery
        ends (which may have made room for a pass cut short, or reported a sooner retry)."""
        async with http_client(self.settings.timeout) as self.http:
            self.delivering = True
            try:
                while True:
                    self.wake.clear()
                    if self._room() and time.time() >= self._next_full_pass():
                        await self.send_due()
                    elif self.resume is not None and len(self.running) <= CONCURRENCY:
                        await self._pass(self.resume)  # the waiting half has gone to the senders: refill it
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), self._sleep())
            finally:  # a stop waits for no receiver and no lock: what is cut is sent again (at least once)
                self.delivering = False
                for task in self.running.values():
                    task.cancel()
                if self.running:
                    await asyncio.wait(list(self.running.values()), timeout=STOP_WAIT)

    def _room(self) -> bool:
        """Whether another delivery may start: at most 2 * CONCURRENCY tasks (CONCURRENCY sending, the rest
        waiting for a slot), so a backlog of days makes no task per entry."""
        return len(self.running) < 2 * CONCURRENCY

    def _next_full_pass(self) -> float:
        """When to list the outbox from the start: a poll interval after the last pass, or when the soonest retry
        known here falls due, but at least PASS_SPACING times the last pass's duration after it: with a large
        backlog every entry's retry would otherwise list the whole outbox again."""
        at = self.passed + self.settings.poll_interval
        if self.soonest is not None:
            at = min(at, max(self.soonest, self.passed + PASS_SPACING * self.pass_took))
        return at

    def _sleep(self) -> float:
        if not self._room():  # a delivery that ends wakes the loop
            return float(self.settings.poll_interval)
        return max(0.0, self._next_full_pass() - time.time())

    async def send_due(self) -> None:
        """One pass from the start: start the due entries, oldest first, and learn when the next falls due."""
        started, self.soonest = time.time(), None
        await self._pass("")
        self.passed = time.time()
        self.pass_took = self.passed - started

    async def _pass(self, after: str) -> None:
        """Start the due entries listed after the key ``after`` that are not under way, until there is no room:
        then ``resume`` keeps where it stopped, for the loop to go on from there once half the places are free."""
        self.resume, position, now = None, after, time.time()
        async for stored in self._listing(OUTBOX, after):
            if not self._room():
                self._resume_after(position)
                return
            position = stored.key
            due = self.next_due(stored.metadata)
            if due is None or stored.key.removeprefix(OUTBOX) in self.running:
                continue
            if due <= now:
                self._start(stored.key)
            else:
                self._due_at(due)

    def _offer(self, key: str) -> None:
        """Start a new entry at once if there is room and no older entry waits for it; else leave it to the
        pass that goes on when room comes (from just before its key: a key's prefix sorts before it)."""
        if self.delivering and self._room() and self.resume is None:
            self._start(key)
        else:
            self._resume_after(key[:-1])
            self.wake.set()

    def _resume_after(self, key: str) -> None:
        """The next pass goes on after ``key``, or after an earlier key another cut left."""
        self.resume = key if self.resume is None else min(self.resume, key)

    def _due_at(self, due: float) -> None:
        self.soonest = due if self.soonest is None else min(self.soonest, due)

    def _start(self, key: str) -> None:
        entry_id = key.removeprefix(OUTBOX)
        task = asyncio.create_task(self._send_in_slot(key))
        self.running[entry_id] = task
        task.add_done_callback(functools.partial(self._done, entry_id))

    def _done(self, entry_id: str, task: asyncio.Task[float | None]) -> None:
        """A delivery ended: note when its entry falls due again and wake the loop, which may now have room for a
        pass cut short, or a sooner retry to sleep until; it does not list the outbox for it."""
        self.running.pop(entry_id, None)
        if not task.cancelled() and (due := task.result()) is not None:
            self._due_at(due)
        self.wake.set()

    async def _listing(self, prefix: str, after: str | None = None) -> Any:
        while True:
            page = await self.storage.list(prefix, start_after=after, limit=PAGE)
            for stored in page:
                yield stored
            if len(page) < PAGE:
                return
            after = page[-1].key

    async def _send_in_slot(self, key: str) -> float | None:
        """One delivery task; returns when its entry falls due again (None: done with, or not known)."""
        async with self.slots:
            try:
                return (await self._attempt(key))[1]
            except (LockBusy, ObjectNotFound):
                pass  # another instance has it
            except Exception:
                log.exception("webhook delivery of %s failed unexpectedly", key)
        return None

    async def send(self, key: str) -> dict[str, str]:
        """Claim the entry, send it to each due endpoint, record the outcomes; returns ``{url: outcome}``."""
        return (await self._attempt(key))[0]

    async def _attempt(self, key: str) -> tuple[dict[str, str], float | None]:
        """``send``, also returning when the entry falls due again (a retry, or another instance's claim ending),
        which the loop then knows without listing the outbox."""
        state, due = await self._claim(key)
        if state is None:
            return {}, None
        if not due:
            return {}, self.next_due(state)
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

    async def _claim(self, key: str) -> tuple[dict[str, Any] | None, list[str]]:
        """The entry's state and the endpoints it is now claimed for; none when nothing is due or another
        instance holds it (the state, None when the entry is gone, says until when)."""
        async with self.service.exclusive("webhooks", key.rsplit("/", 1)[1]):
            stored = await self.storage.stat(key)
            now = time.time()
            if stored is None:
                return None, []
            state = stored.metadata
            if state.get("claimed_until", 0) > now:
                return state, []
            due = [url for url, endpoint in state["endpoints"].items()
                   if not endpoint["dead"] and endpoint["next"] <= now and url in self.endpoints]
            if due:
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

    async def _record(self, key: str, errors: dict[str, str | None]) -> tuple[dict[str, str], float | None]:
        """Write the attempt's outcomes; returns them and when the entry falls due again (None: it left the
        outbox, or nothing is pending here)."""
        outcomes = {}
        async with self.service.exclusive("webhooks", key.rsplit("/", 1)[1]):
            stored = await self.storage.stat(key)
            if stored is None:
                return {}, None
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
            kept = await self._settle(key, stored, state)
        return outcomes, self.next_due(state) if kept else None

    async def _settle(self, key: str, stored: StoredObject, state: dict[str, Any]) -> bool:
        """Keep the entry while an endpoint is pending (True); else delete it, or move it to the dead letters."""
        if any(not endpoint["dead"] for endpoint in state["endpoints"].values()):
            await self.storage.update_metadata(key, state)
            return True
        if state["endpoints"]:
            state["dead_at"] = time.time()
            await self.storage.move(key, DEAD + key.removeprefix(OUTBOX), state)
        else:
            await self.storage.delete(key)
        return False

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

