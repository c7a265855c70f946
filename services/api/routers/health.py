"""Liveness, readiness and Prometheus metrics of the api itself."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok", "service": "api"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and the host is ready (NATS connected, configuration
    published to KV, not draining)."""
    checks = {"service": bool(request.app.state.ready()), "database": await request.app.state.db.ping()}
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "service": "api", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
