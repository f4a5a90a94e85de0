"""For operators: GET /healthz (liveness), GET /readyz (NATS, DB, Redis), GET /metrics."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import text

from services.api.deps import Container, Deps
from services.api.errors import NotFound

router = APIRouter()

READY_CHECK_TIMEOUT_S = 2


def _checks(c: Container) -> dict[str, Callable[[], Awaitable[None]]]:
    async def database() -> None:
        async with c.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def nats_server() -> None:
        if not c.nc.is_connected:
            raise ConnectionError("not connected")
        await c.js.stream_info("ORDERS")

    async def redis_server() -> None:
        await c.redis.ping()

    return {"database": database, "nats": nats_server, "redis": redis_server}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(c: Deps) -> Response:
    checks: dict[str, str] = {}
    for name, check in _checks(c).items():
        try:
            await asyncio.wait_for(check(), timeout=READY_CHECK_TIMEOUT_S)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return Response(
        json.dumps({"status": "ready" if ready else "not_ready", "checks": checks}),
        status_code=200 if ready else 503,
        media_type="application/json",
    )


@router.get("/metrics")
async def metrics(c: Deps) -> Response:
    if not c.settings.metrics_on:  # production: off unless COPYTRADE_METRICS_ENABLED=true
        raise NotFound("no such route")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several API processes (COPYTRADE_API_WORKERS): the sum over all of them.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
