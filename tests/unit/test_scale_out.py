"""Scale-out settings, per-process metrics ports, JSON logs with ids, workers' ops endpoint."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.api.request_ids import RequestIds
from services.dev.launcher import metrics_ports
from services.infra import bus, metrics
from services.infra.logs import bind_log_context, formatter, log_context
from services.infra.ops_server import OpsServer
from services.infra.settings import Settings

assert metrics.SWEEPER_BACKLOG  # registered: the ops endpoint below exports it
CLUSTER = "nats://a:4222, nats://b:4222,nats://c:4222"


def test_nats_url_takes_a_cluster_list_and_replicas_follow_it() -> None:
    settings = Settings.from_env({"COPYTRADE_NATS_URL": CLUSTER})
    assert settings.nats_servers == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert bus.servers(CLUSTER) == settings.nats_servers
    assert settings.stream_replicas == 3
    assert Settings.from_env({"COPYTRADE_NATS_URL": "nats://a:4222"}).stream_replicas == 1
    assert Settings.from_env({}).stream_replicas == 1
    explicit = {"COPYTRADE_NATS_URL": "nats://lb:4222", "COPYTRADE_NATS_REPLICAS": "3"}
    assert Settings.from_env(explicit).stream_replicas == 3
    assert bus.stream_config(3).num_replicas == 3
    assert bus.shards_stream_config(3).num_replicas == 3


def test_api_processes_default_to_the_cpu_count_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert Settings.from_env({}).api_processes == 1
    production = {"COPYTRADE_ENVIRONMENT": "production"}
    assert Settings.from_env(production).api_processes == 6
    assert Settings.from_env({**production, "COPYTRADE_API_WORKERS": "3"}).api_processes == 3
    assert Settings.from_env({"COPYTRADE_API_HOST": "0.0.0.0"}).api_host == "0.0.0.0"


def test_every_process_gets_its_own_metrics_port() -> None:
    ports = metrics_ports(9100, workers=2)
    assert ports == {
        "replicator-1": 9101,
        "replicator-2": 9102,
        "sweeper": 9103,
        "poller": 9104,
        "notifier": 9105,
    }
    assert len(set(ports.values())) == len(ports)
    assert metrics_ports(0, workers=2) == {}


def _capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    logger = logging.getLogger("copytrade.test.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


async def test_log_lines_are_json_with_the_ids_of_their_task() -> None:
    logger, stream = _capture()

    async def leg(leg_id: str) -> None:
        bind_log_context(leg_id=leg_id, account_id=f"acct-{leg_id}")
        await asyncio.sleep(0)
        logger.info("placed %s", leg_id)

    with log_context(order_id="order-1", request_id=None):
        logger.info("planning")
        await asyncio.gather(leg("1"), leg("2"))
    logger.info("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "planning" and lines[0]["order_id"] == "order-1"
    assert "request_id" not in lines[0]
    placed = {line["leg_id"]: line for line in lines[1:3]}
    assert placed["1"]["account_id"] == "acct-1" and placed["2"]["account_id"] == "acct-2"
    assert all(line["order_id"] == "order-1" for line in placed.values())
    assert "order_id" not in lines[3] and "leg_id" not in lines[3]
    assert {"timestamp", "level", "logger", "process"} <= set(lines[3])


async def test_request_ids_are_bound_to_log_lines_and_echoed() -> None:
    logger, stream = _capture()

    async def endpoint(request: Request) -> JSONResponse:
        logger.info("handled")
        return JSONResponse({})

    app = RequestIds(Starlette(routes=[Route("/", endpoint)]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        given = await client.get("/", headers={"x-request-id": "abc-123"})
        fresh = await client.get("/")
        odd = await client.get("/", headers={"x-request-id": "no spaces\tor tabs"})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(fresh.headers["x-request-id"]) == 32
    assert odd.headers["x-request-id"] != "no spaces\tor tabs"
    ids = [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()]
    assert ids[0] == "abc-123" and ids[1] == fresh.headers["x-request-id"]


async def test_worker_ops_endpoint_serves_metrics_health_and_readiness() -> None:
    healthy = True

    async def database() -> None:
        if not healthy:
            raise ConnectionError("down")

    server = OpsServer("127.0.0.1", 0, {"database": database})
    await server.start()
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).json()["checks"] == {"database": "ok"}
            assert "copytrade_sweeper_backlog_legs" in (await client.get("/metrics")).text
            healthy = False
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"]["database"] == "unavailable: ConnectionError"
            assert (await client.get("/nothing")).status_code == 404
    finally:
        await server.close()
