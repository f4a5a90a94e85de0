"""Sizes and counts: request bodies (413 before parsing, even without a token), list fields,
socket tokens spent once, sockets per user, writes per user (429 rate_limited)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from services.infra.throttle import TokenBuckets
from tests.security.conftest import AppFactory, Client, random_address

BIG = json.dumps({"client_order_id": "x" * (100 * 1024)})


async def test_oversized_body_is_refused_before_parsing_without_a_token(
    api_app: AppFactory,
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        for path in ("/v1/orders", "/v1/auth/register", "/v1/auth/token", "/v1/accounts"):
            r = await client.http.post(
                path, content=BIG, headers={"content-type": "application/json"}
            )
            assert r.status_code == 413, (path, r.text)
            assert r.json()["error"]["code"] == "payload_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(40):
                yield b" " * 4096

        r = await client.http.post(
            "/v1/orders", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        small = await client.http.post("/v1/orders", json={})
        assert small.status_code == 401  # under the limit: authentication as before


async def test_body_limit_is_a_setting_and_zero_turns_it_off(api_app: AppFactory) -> None:
    async with api_app(max_body_bytes=0) as app:
        r = await Client(app, random_address()).http.post(
            "/v1/orders", content=BIG, headers={"content-type": "application/json"}
        )
        assert r.status_code == 401
    async with api_app(max_body_bytes=1024) as app:
        r = await Client(app, random_address()).http.post(
            "/v1/auth/token", json={"email": "a@b.cd", "password": "p" * 2000}
        )
        assert r.status_code == 413


async def test_list_fields_are_bounded(api_app: AppFactory) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        _, follower = await client.user("follower")
        master_id, _ = await client.user("master", copy_access="open")
        watch = [f"SYM{i}USDT" for i in range(51)]
        r = await client.http.post(
            "/v1/accounts",
            headers=client.auth(follower),
            json={
                "broker": "binance",
                "label": "b",
                "credentials": {"api_key": "k", "secret_key": "s", "watch_symbols": watch},
            },
        )
        assert r.status_code == 422, r.text
        for field, value in (
            ("symbols_allow", [f"S{i}" for i in range(201)]),
            ("symbols_block", [f"S{i}" for i in range(201)]),
            ("sides", ["buy", "sell", "buy"]),
        ):
            r = await client.http.post(
                "/v1/subscriptions",
                headers=client.auth(follower),
                json={
                    "master_id": master_id,
                    "account_id": "00000000-0000-0000-0000-000000000000",
                    "sizing": {"mode": "fixed", "qty": "1"},
                    "filters": {field: value},
                },
            )
            assert r.status_code == 422, (field, r.text)


def _open(client: TestClient, token: str) -> object:
    return client.websocket_connect(
        "/v1/ws",
        subprotocols=["copytrade.v1", token],
        headers={"origin": "http://testserver"},
    )


def _refusal(client: TestClient, token: str) -> str:
    with _open(client, token) as socket, pytest.raises(WebSocketDisconnect) as refused:
        socket.receive_text()  # type: ignore[attr-defined]
        socket.receive_text()  # type: ignore[attr-defined]
    assert refused.value.code == 1008
    return str(refused.value.reason)


def test_a_socket_token_opens_one_socket_and_sockets_per_user_are_capped(
    servers: dict[str, str], service_env: dict[str, str], simulator: str
) -> None:
    from services.api.app import build_app
    from tests.security.conftest import settings_for

    app = build_app(settings_for(servers, service_env, simulator, ws_sockets_per_user="2"))
    with TestClient(app) as client:
        email = "ws-" + random_address() + "@security.test"
        body = {"email": email, "password": "correct horse battery"}
        assert (
            client.post("/v1/auth/register", json={**body, "role": "follower"}).status_code == 201
        )
        access = client.post("/v1/auth/token", json=body).json()["access_token"]
        auth = {"authorization": f"Bearer {access}"}

        def socket_token() -> str:
            token: str = client.post("/v1/ws/token", headers=auth).json()["token"]
            return token

        reused = socket_token()
        with _open(client, reused) as first:
            assert json.loads(first.receive_text())["type"] == "snapshot"  # type: ignore[attr-defined]
            assert _refusal(client, reused) == "token already used"
            with _open(client, socket_token()) as second:
                assert json.loads(second.receive_text())["type"] == "snapshot"  # type: ignore[attr-defined]
                assert _refusal(client, socket_token()) == "too many sockets for this user"


async def test_writes_per_user_are_limited_across_api_processes(api_app: AppFactory) -> None:
    """A burst of 3 writes, refilled at 1/s, shared by two API processes through Valkey: the
    fourth write anywhere is 429 rate_limited with Retry-After; reads and other users go on."""
    limits = {"writes_per_user_per_s": "1", "write_burst_per_user": "3"}
    async with api_app(**limits) as first, api_app(**limits) as second:
        one, two = Client(first, random_address()), Client(second, random_address())
        for client in (one, two):  # Valkey connections open before counting (see README)
            assert (await client.http.get("/readyz")).status_code == 200
        _, token = await one.user("follower")
        auth = one.auth(token)
        for client in (one, two, one):
            r = await client.http.post("/v1/ws/token", headers=auth)
            assert r.status_code == 200, r.text
        for client in (two, one):
            r = await client.http.post("/v1/ws/token", headers=auth)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "rate_limited"
            assert int(r.headers["retry-after"]) in range(1, 3)
        assert (await one.http.get("/v1/accounts", headers=auth)).status_code == 200
        _, other = await two.user("follower")
        assert (await two.http.post("/v1/ws/token", headers=two.auth(other))).status_code == 200


async def test_parallel_writes_cannot_slip_past_the_limit(api_app: AppFactory) -> None:
    async with api_app(writes_per_user_per_s="0.01", write_burst_per_user="5") as app:
        client = Client(app, random_address())
        _, token = await client.user("follower")
        assert (await client.http.get("/readyz")).status_code == 200
        answers = await asyncio.gather(
            *(client.http.post("/v1/ws/token", headers=client.auth(token)) for _ in range(16))
        )
        assert sorted(r.status_code for r in answers) == [200] * 5 + [429] * 11


async def test_zero_turns_the_write_limit_off(api_app: AppFactory) -> None:
    async with api_app(writes_per_user_per_s="0", write_burst_per_user="1") as app:
        client = Client(app, random_address())
        _, token = await client.user("follower")
        for _ in range(5):
            r = await client.http.post("/v1/ws/token", headers=client.auth(token))
            assert r.status_code == 200, r.text


async def test_write_limit_fails_open_to_a_local_bucket_without_valkey() -> None:
    unreachable = aioredis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    try:
        buckets = TokenBuckets(unreachable, per_second=0.5, burst=2, prefix="test:writes")
        assert await buckets.take("user-a") is None
        assert await buckets.take("user-a") is None
        wait = await buckets.take("user-a")
        assert wait is not None and 1.0 < wait <= 2.0
        assert await buckets.take("user-b") is None  # per key
    finally:
        await unreachable.aclose()


async def test_a_lease_of_tokens_saves_round_trips_and_never_exceeds_the_burst(
    servers: dict[str, str],
) -> None:
    """Two API processes' buckets on the same key (burst 300, refill ~0): each takes 3 tokens
    per round trip, together they admit exactly the burst, then both refuse."""
    redis = aioredis.from_url(servers["redis"])
    prefix = f"test:lease:{random_address()}"
    try:
        one, two = (
            TokenBuckets(redis, per_second=0.001, burst=300, prefix=prefix) for _ in range(2)
        )
        answers = [await (one if i % 2 else two).take("user") for i in range(400)]
        admitted = sum(1 for a in answers if a is None)
        assert admitted == 300
        assert all(a is not None and a > 0 for a in answers[300:])
        # 100 lease round trips for the 300 tokens, plus the refused tail's two tries each.
        assert one.round_trips + two.round_trips <= 100 + 2 * 100 + 4
        assert one.round_trips + two.round_trips < 400
    finally:
        await redis.aclose()


async def test_a_small_burst_takes_one_token_at_a_time(servers: dict[str, str]) -> None:
    redis = aioredis.from_url(servers["redis"])
    try:
        buckets = TokenBuckets(redis, per_second=0.001, burst=5, prefix=f"t:{random_address()}")
        answers = [await buckets.take("user") for _ in range(7)]
        assert [a is None for a in answers] == [True] * 5 + [False] * 2
        assert buckets.round_trips == 7
    finally:
        await redis.aclose()
