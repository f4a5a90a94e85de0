"""The lean HTTP/1.1 transport against the real simulator app over a real socket."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from brokers.lean import LeanTransport
from services.dev.embedded import free_port, wait_for_port
from services.dev.processes import Child


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    port = free_port()
    child = Child(
        "simulator",
        "brokers.sim",
        {**os.environ, "COPYTRADE_SIM_PORT": str(port)},
        Path(tmp_path_factory.mktemp("lean")) / "simulator.log",
    )
    child.start()
    try:
        wait_for_port(port, 20, child.process)
        yield f"http://127.0.0.1:{port}"
    finally:
        child.signal(15)
        child.wait(10)


async def test_requests_keep_alive_and_errors(sim_url: str) -> None:
    transport = LeanTransport(max_connections=8)
    async with httpx.AsyncClient(base_url=sim_url, transport=transport, timeout=5) as http:
        keys = (await http.post("/sim/accounts", json={"cash": "1000"})).json()
        headers = {"APCA-API-KEY-ID": keys["key_id"], "APCA-API-SECRET-KEY": keys["secret_key"]}
        responses = await asyncio.gather(
            *(http.get("/v2/account", headers=headers) for _ in range(40))
        )
        assert {r.status_code for r in responses} == {200}
        assert responses[0].json()["cash"] == "1000"
        assert sum(len(v) for v in transport._idle.values()) <= 8  # pooled, bounded
        missing = await http.get("/v2/orders/nope", headers=headers)
        assert missing.status_code == 404 and missing.json()["code"] == 40410000
        deleted = await http.request("DELETE", "/v2/orders/nope", headers=headers)
        assert deleted.status_code == 404
        await http.put("/sim/faults", json={"latency_ms": 500})
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/v2/account", headers=headers, timeout=httpx.Timeout(5, read=0.1))
        await http.put("/sim/faults", json={"latency_ms": 0})


async def test_connect_errors_are_not_sent() -> None:
    port = free_port()  # nothing listens here
    async with httpx.AsyncClient(transport=LeanTransport(), timeout=1) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")
