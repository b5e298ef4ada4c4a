"""Prometheus metrics of one service instance (prometheus-client), in a registry of its own.

A private registry keeps two service instances in one process (or one test run) from colliding. With
several Hypercorn workers, ``PROMETHEUS_MULTIPROC_DIR`` switches prometheus-client to its multiprocess mode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

SIZE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    def __init__(self, backend: str = "local") -> None:
        self.backend = backend
        self.registry = CollectorRegistry(auto_describe=True)
        self.uploads = Counter("upload_service_uploads", "Files stored", ["path", "backend"], registry=self.registry)
        self.bytes = Counter("upload_service_upload_bytes", "Bytes stored", ["path", "backend"], registry=self.registry)
        self.duration = Histogram("upload_service_upload_seconds", "Time to receive one file", ["path"],
                                  buckets=SIZE_BUCKETS, registry=self.registry)
        self.active = Gauge("upload_service_active_uploads", "Uploads being received", ["path"],
                            registry=self.registry, multiprocess_mode="livesum")
        self.rejections = Counter("upload_service_rejections", "Refused requests", ["reason", "status"],
                                  registry=self.registry)
        self.sweeps = Counter("upload_service_cleanup_removed", "Things removed by cleanup sweeps",
                              registry=self.registry)
        self._plugin_counters: dict[str, Counter] = {}
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def _labelled(self, metric: Counter | Gauge | Histogram, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once: prometheus-client validates and locks on every call, and
        each small upload asked five times."""
        key = (metric._name, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def counter(self, name: str, description: str, labels: tuple[str, ...] = ()) -> Counter:
        """A plugin's own counter in this registry, made once per name (``upload_service_`` is prefixed)."""
        full = name if name.startswith("upload_service_") else f"upload_service_{name}"
        made = self._plugin_counters.get(full)
        if made is None:
            made = self._plugin_counters[full] = Counter(full, description, list(labels), registry=self.registry)
        elif tuple(made._labelnames) != tuple(labels):
            raise ValueError(f"counter {full} exists with the labels {made._labelnames}, not {labels}")
        return made

    @contextmanager
    def active_upload(self, path: str) -> Iterator[None]:
        active = self._labelled(self.active, path)
        active.inc()
        started = time.perf_counter()
        try:
            yield
        finally:
            active.dec()
            self._labelled(self.duration, path).observe(time.perf_counter() - started)

    def uploaded(self, path: str, size: int) -> None:
        self._labelled(self.uploads, path, self.backend).inc()
        self._labelled(self.bytes, path, self.backend).inc(size)

    def rejected(self, reason: str, status: int) -> None:
        self._labelled(self.rejections, reason, str(status)).inc()

    def close(self) -> None:
        """In multiprocess mode, drop this process's live gauges (active uploads) when it stops serving."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(os.getpid())

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
