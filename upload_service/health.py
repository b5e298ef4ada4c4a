"""Liveness, readiness and Prometheus metrics routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST
from quart import Blueprint, Response

from .responses import json_response

if TYPE_CHECKING:
    from .service import UploadService


def register_health_routes(bp: Blueprint, service: UploadService) -> None:
    @bp.route("/healthz", endpoint="healthz")
    async def healthz() -> Response:
        """The process answers."""
        return json_response({"status": "ok"})

    @bp.route("/readyz", endpoint="readyz")
    async def readyz() -> Response:
        """The storage can be written to right now."""
        try:
            await service.storage.check_ready()
        except Exception as error:
            return json_response({"status": "unavailable", "storage": service.storage.name, "detail": str(error)}, 503)
        return json_response({"status": "ok", "storage": service.storage.name})

    @bp.route("/metrics", endpoint="metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), content_type=CONTENT_TYPE_LATEST)
