"""Liveness, readiness and Prometheus metrics routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST
from quart import Blueprint, Response

from .api import schemas
from .api.openapi import Reply, documented
from .responses import json_response

if TYPE_CHECKING:
    from .service import UploadService


def register_health_routes(bp: Blueprint, service: UploadService) -> None:
    @bp.route("/healthz", endpoint="healthz")
    @documented(public=True, replies={200: Reply("alive", schemas.Health)})
    async def healthz() -> Response:
        """The process answers."""
        return json_response({"status": "ok"})

    @bp.route("/readyz", endpoint="readyz")
    @documented(public=True, replies={200: Reply("ready", schemas.Health), 503: Reply("not ready", schemas.Health)})
    async def readyz() -> Response:
        """The storage can be written to right now."""
        try:
            await service.storage.check_ready()
        except Exception as error:
            return json_response({"status": "unavailable", "storage": service.storage.name, "detail": str(error)}, 503)
        return json_response({"status": "ok", "storage": service.storage.name})

    @bp.route("/metrics", endpoint="metrics")
    @documented(public=True, replies={200: Reply("Prometheus text format", {"type": "string"}, "text/plain")})
    async def metrics() -> Response:
        """Prometheus metrics: uploads, bytes, durations, active uploads, rejections, cleanup."""
        return Response(service.metrics.render(), content_type=CONTENT_TYPE_LATEST)
