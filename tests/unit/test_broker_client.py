"""The pool's broker client (pyreqwest, HTTP/2): what it sends, what it answers, how it fails.

Against real sockets: the simulator in its own process (HTTP/2 with prior knowledge, as the
workers reach it) and the contract tests' recording server (HTTP/1.1, every request kept).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from brokers.http import H2Client, HttpClientPool, HttpSettings
from brokers.transport import transport_error
from replication.errors import Retryable, Unknown
from tests.contract.servers import (
    ROOT,
    RecordingServer,
    free_port,
    recording_server,
    simulator_process,
    wait_until,
)


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with simulator_process(Path(tmp_path_factory.mktemp("h2")) / "simulator.log") as url:
        yield url


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    with recording_server(lambda recorded: (201, {"ok": True})) as server:
        yield server


@pytest.fixture
async def sim_client(sim_url: str) -> AsyncIterator[H2Client]:
    client = H2Client(sim_url, HttpSettings(read_timeout_s=5))
    yield client
    await client.aclose()


async def test_speaks_http2_to_the_simulator_and_multiplexes(sim_client: H2Client) -> None:
    keys = (await sim_client.request("POST", "/sim/accounts", json={"cash": "1000"})).json()
    headers = {"APCA-API-KEY-ID": keys["key_id"], "APCA-API-SECRET-KEY": keys["secret_key"]}
    answers = await asyncio.gather(
        *(sim_client.request("GET", "/v2/account", headers=headers) for _ in range(200))
    )
    assert {a.status_code for a in answers} == {200}
    assert all(a.is_success for a in answers)
    assert answers[0].json()["cash"] == "1000"
    assert answers[0].http_version == "HTTP/2.0"
    assert answers[0].headers.get("Content-Type") == answers[0].headers.get("content-type")
    assert "json" in answers[0].headers.get("content-type", "")
    missing = await sim_client.request("GET", "/v2/orders/nope", headers=headers)
    assert missing.status_code == 404 and not missing.is_success
    assert missing.json()["code"] == 40410000
    assert "40410000" in missing.text


async def test_requests_carry_path_params_json_form_and_headers(recorder: RecordingServer) -> None:
    client = H2Client(recorder.url, HttpSettings(h2c=False))
    try:
        answer = await client.request(
            "POST",
            "/v2/orders",
            json={"qty": "1"},
            params={"a": "b c"},
            headers={"APCA-API-KEY-ID": "k"},
        )
        await client.request("PUT", "/orders/1", data={"qty": "2", "tag": "x y"})
        await client.request("GET", "/api/v3/order?symbol=X&signature=ab")
    finally:
        await client.aclose()
    assert answer.status_code == 201 and answer.json() == {"ok": True}
    posted, put, got = recorder.take()
    assert (posted.method, posted.path) == ("POST", "/v2/orders")
    assert posted.query_params == [("a", "b c")]
    assert posted.headers["apca-api-key-id"] == "k"
    assert posted.headers["content-type"] == "application/json"
    assert posted.headers["user-agent"] == "copytrade"
    assert json.loads(posted.body) == {"qty": "1"}
    assert put.headers["content-type"] == "application/x-www-form-urlencoded"
    assert put.body_params == [("qty", "2"), ("tag", "x y")]
    assert got.query_params == [("symbol", "X"), ("signature", "ab")]
    assert "cookie" not in posted.headers


async def test_a_slow_answer_is_unknown_and_a_refused_connect_is_retryable(
    sim_url: str,
) -> None:
    client = H2Client(sim_url, HttpSettings(read_timeout_s=0.2))
    try:
        keys = (await client.request("POST", "/sim/accounts", json={"cash": "1"})).json()
        headers = {"APCA-API-KEY-ID": keys["key_id"], "APCA-API-SECRET-KEY": keys["secret_key"]}
        await client.request("PUT", "/sim/faults", json={"latency_ms": 1000})
        with pytest.raises(httpx.TimeoutException) as slow:
            await client.request("GET", "/v2/account", headers=headers)
        assert isinstance(transport_error(slow.value), Unknown)  # it was sent
    finally:
        await client.request("PUT", "/sim/faults", json={"latency_ms": 0})
        await client.aclose()
    nobody = H2Client(f"http://127.0.0.1:{free_port()}", HttpSettings(connect_timeout_s=1))
    try:
        with pytest.raises(httpx.ConnectError) as refused:
            await nobody.request("GET", "/healthz")
        assert isinstance(transport_error(refused.value), Retryable)  # never sent
    finally:
        await nobody.aclose()


@pytest.mark.parametrize("transport", ["reqwest", "httpx"])
async def test_one_client_per_host_and_process(transport: Any) -> None:
    pool = HttpClientPool(HttpSettings(transport=transport))
    try:
        client = pool.client("http://127.0.0.1:9/")
        assert pool.client("http://127.0.0.1:9") is client
        assert pool.client("https://other.example") is not client
        expected = H2Client if transport == "reqwest" else httpx.AsyncClient
        assert isinstance(client, expected)
    finally:
        await pool.aclose()


@pytest.mark.parametrize("h2c", [True, False])
async def test_a_request_the_server_received_is_never_called_unsent(h2c: bool) -> None:
    """pyreqwest names a connection lost after the request went out a ConnectError; the
    client must read that as an unknown outcome (to be looked up), never as "not sent"."""
    received: list[int] = []

    async def take_and_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(len(await reader.read(65536)))
        writer.close()

    server = await asyncio.start_server(take_and_drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = H2Client(f"http://127.0.0.1:{port}", HttpSettings(h2c=h2c, read_timeout_s=2))
    try:
        with pytest.raises(httpx.TransportError) as dropped:
            await client.request("POST", "/v2/orders", json={"client_order_id": "c1"})
    finally:
        await client.aclose()
        server.close()
    assert received and received[0] > 0
    assert not isinstance(dropped.value, httpx.ConnectError | httpx.ConnectTimeout)
    assert isinstance(transport_error(dropped.value), Unknown)


async def test_tls_simulator_negotiates_http2_and_http1_by_alpn(tmp_path: Path) -> None:
    port = free_port()
    tls_dir = tmp_path / "tls"
    log = (tmp_path / "simulator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "brokers.sim", "--port", str(port), "--tls-dir", str(tls_dir)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"https://127.0.0.1:{port}"
    ca = str(tls_dir / "ca.pem")

    def trusting() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=ca)

    try:

        def serving() -> bool:
            assert process.poll() is None, (tmp_path / "simulator.log").read_text()
            try:
                return httpx.get(f"{url}/healthz", verify=trusting(), timeout=1).status_code == 200
            except (httpx.TransportError, OSError):
                return False

        wait_until(serving, 30, "TLS simulator did not start")
        client = H2Client(url, HttpSettings(ca_file=ca))
        try:
            answer = await client.request("GET", "/healthz")
            assert (answer.status_code, answer.http_version) == (200, "HTTP/2.0")
        finally:
            await client.aclose()
        untrusting = H2Client(url, HttpSettings())
        try:
            with pytest.raises(httpx.TransportError):
                await untrusting.request("GET", "/healthz")
        finally:
            await untrusting.aclose()
        async with httpx.AsyncClient(verify=trusting()) as http1:  # offers HTTP/1.1 only
            answer = await http1.get(f"{url}/healthz")
            assert (answer.status_code, answer.http_version) == (200, "HTTP/1.1")
    finally:
        process.terminate()
        process.wait(10)
        log.close()
