"""The simulator against Alpaca's official OpenAPI spec, with Schemathesis: requests generated
from the spec for every /v2 operation the simulator serves; every answer must match the spec's
response schemas and content types, and none may be a server error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks

from services.dev.embedded import free_port, wait_for_port
from services.dev.processes import Child

SPEC = Path(__file__).resolve().parents[1] / "resources" / "alpaca" / "trading-api.json"
SERVED = {
    "GET /v2/account",
    "POST /v2/orders",
    "GET /v2/orders",
    "GET /v2/orders:by_client_order_id",
    "GET /v2/orders/{order_id}",
    "PATCH /v2/orders/{order_id}",
    "DELETE /v2/orders/{order_id}",
    "GET /v2/positions",
    "GET /v2/assets/{symbol_or_asset_id}",
}
schema = schemathesis.openapi.from_path(str(SPEC))
OPERATIONS = {
    f"{op.method.upper()} {op.path}": op
    for op in (result.ok() for result in schema.get_all_operations())
    if f"{op.method.upper()} {op.path}" in SERVED
}


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    child = Child(
        "simulator",
        "brokers.sim",
        {**os.environ, "COPYTRADE_SIM_PORT": str(port)},
        Path(tmp_path_factory.mktemp("conformance")) / "simulator.log",
    )
    child.start()
    try:
        wait_for_port(port, 20, child.process)
        url = f"http://127.0.0.1:{port}"
        keys = httpx.post(f"{url}/sim/accounts", json={"cash": "10000000"}).json()
        # Something to find: an open order and a position.
        headers = {"APCA-API-KEY-ID": keys["key_id"], "APCA-API-SECRET-KEY": keys["secret_key"]}
        httpx.post(
            f"{url}/v2/orders",
            headers=headers,
            json={
                "symbol": "AAPL",
                "qty": "3",
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
            },
        )
        httpx.post(
            f"{url}/v2/orders",
            headers=headers,
            json={
                "symbol": "AAPL",
                "qty": "1",
                "side": "buy",
                "type": "limit",
                "limit_price": "1",
                "time_in_force": "gtc",
            },
        )
        yield url, headers
    finally:
        child.signal(15)
        child.wait(10)


def test_every_served_operation_is_in_the_spec() -> None:
    assert set(OPERATIONS) == SERVED


@pytest.mark.parametrize("label", sorted(SERVED))
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_simulator_conforms(
    simulator: tuple[str, dict[str, str]], label: str, mode: GenerationMode
) -> None:
    url, headers = simulator
    operation = OPERATIONS[label]
    statuses: set[int] = set()

    @settings(
        max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    @given(operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=url, headers=headers)
        statuses.add(response.status_code)
        assert response.status_code < 500, (label, response.status_code, response.text[:300])
        case.validate_response(
            response, checks=[checks.response_schema_conformance, checks.content_type_conformance]
        )

    run()
    assert statuses, "nothing was sent"
