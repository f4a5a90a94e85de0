"""BrokerClient's short path sends what httpx's full path would, and leaves the rest to httpx."""

from __future__ import annotations

import json

import httpx
import pytest

from brokers.http import BrokerClient, HttpClientPool, HttpSettings

TIMEOUT = httpx.Timeout(connect=1.0, read=2.0, write=3.0, pool=4.0)


def recording_client(seen: list[httpx.Request]) -> BrokerClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            201, json={"ok": True}, headers={"set-cookie": "session=1", "retry-after": "2"}
        )

    return BrokerClient(
        base_url="https://venue.example/api/",
        transport=httpx.MockTransport(handler),
        timeout=TIMEOUT,
    )


async def test_plain_call_goes_straight_to_the_transport() -> None:
    seen: list[httpx.Request] = []
    async with recording_client(seen) as client:
        response = await client.request(
            "POST",
            "/v2/orders",
            json={"qty": "1"},
            params={"a": "b c"},
            headers={"APCA-API-KEY-ID": "k"},
        )
    assert response.status_code == 201
    assert response.json() == {"ok": True}
    assert response.headers["retry-after"] == "2"
    assert response.request is seen[0]
    request = seen[0]
    assert str(request.url) == "https://venue.example/api/v2/orders?a=b+c"
    assert request.headers["apca-api-key-id"] == "k"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"qty": "1"}
    assert request.extensions["timeout"] == TIMEOUT.as_dict()
    assert not client.cookies  # broker cookies are never kept


async def test_form_bodies_and_query_strings_in_the_path() -> None:
    seen: list[httpx.Request] = []
    async with recording_client(seen) as client:
        await client.request("PUT", "/orders/1", data={"qty": "2"})
        await client.request("GET", "/api/v3/order?symbol=X&signature=ab")
    assert seen[0].content == b"qty=2"
    assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen[1].url.query == b"symbol=X&signature=ab"


async def test_other_calls_take_httpx_full_path() -> None:
    seen: list[httpx.Request] = []
    async with recording_client(seen) as client:
        await client.request("GET", "https://other.example/x", timeout=9.0)
    assert str(seen[0].url) == "https://other.example/x"
    assert seen[0].extensions["timeout"]["read"] == 9.0
    assert client.cookies.get("session") == "1"  # httpx's own behaviour, untouched


@pytest.mark.parametrize("transport", ["lean", "h1", "h2"])
async def test_the_pool_hands_out_broker_clients(transport: str) -> None:
    pool = HttpClientPool(HttpSettings(transport=transport))
    try:
        client = pool.client("http://127.0.0.1:9/")
        assert isinstance(client, BrokerClient)
        assert pool.client("http://127.0.0.1:9") is client
    finally:
        await pool.aclose()
