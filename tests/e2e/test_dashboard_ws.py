"""The WebSocket gateway: who sees what, refusals, session expiry, backpressure."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.helpers import Api, Stack, eventually


def ws_url(stack: Stack) -> str:
    return stack.api_url.replace("http://", "ws://") + "/v1/ws"


async def ws_token(api: Api, token: str) -> str:
    r = await api.http.post("/v1/ws/token", headers=api.auth(token))
    assert r.status_code == 200 and r.json()["expires_in"] <= 60
    value: str = r.json()["token"]
    return value


async def connect(stack: Stack, token: str, origin: str | None = None) -> Any:
    return await websockets.connect(
        ws_url(stack),
        subprotocols=["copytrade.v1", token],  # type: ignore[list-item]
        origin=origin or stack.api_url,
        open_timeout=10,
        max_size=2**22,
    )


class Collector:
    """Reads every event of one socket in the background."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.events: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                self.events.append(json.loads(raw))
        except ConnectionClosed:
            pass

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def close(self) -> None:
        await self.socket.close()
        await self.task


async def test_each_user_sees_only_its_own_events(api: Api, stack: Stack) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    alice = await api.follower(master_id, {"mode": "fixed", "qty": "1"})
    bob = await api.follower(master_id, {"mode": "fixed", "qty": "2"})
    sockets = {}
    for name, token in (("alice", alice["token"]), ("bob", bob["token"]), ("master", master)):
        socket = await connect(stack, await ws_token(api, token))
        assert socket.subprotocol == "copytrade.v1"
        sockets[name] = Collector(socket)
    try:
        order = (await api.order(master, master_account, qty="3")).json()

        async def delivered() -> bool:
            return all(
                any(
                    e.get("order_id") == order["order_id"] and e.get("status") == "filled"
                    for e in sockets[n].of("leg.updated")
                )
                for n in ("alice", "bob")
            ) and any(
                e["order_id"] == order["order_id"] and e["status"] == "replicated"
                for e in sockets["master"].of("order.updated")
            )

        await eventually(delivered, timeout_s=15)
        for name, follower in (("alice", alice), ("bob", bob)):
            legs = sockets[name].of("leg.updated")
            assert {e["account_id"] for e in legs} == {follower["account_id"]}
            assert {e["follower_id"] for e in legs} == {follower["user_id"]}
            assert sockets[name].of("snapshot")[0]["copies"] == []
            assert not sockets[name].of("order.updated")
        assert [e["qty"] for e in sockets["alice"].of("leg.updated")] == ["1"]
        assert [e["qty"] for e in sockets["bob"].of("leg.updated")] == ["2"]
        master_events = sockets["master"].of("order.updated")
        assert not sockets["master"].of("leg.updated")
        final = [e for e in master_events if e["status"] == "replicated"][-1]
        assert final["by_status"] == {"filled": 2} and final["legs_total"] == 2
        assert final["fanout_ms"] > 0
        # No follower identity reaches the master, not even inside the aggregates.
        raw = json.dumps(sockets["master"].events)
        for follower in (alice, bob):
            assert follower["user_id"] not in raw and follower["account_id"] not in raw

        # A second connection of the same user gets a snapshot of what it missed.
        late = Collector(await connect(stack, await ws_token(api, alice["token"])))

        async def snapshot_arrived() -> bool:
            return bool(late.of("snapshot"))

        await eventually(snapshot_arrived)
        [copy] = late.of("snapshot")[0]["copies"]
        assert copy["order_id"] == order["order_id"] and copy["status"] == "filled"
        await late.close()
    finally:
        for collector in sockets.values():
            await collector.close()


async def _refused(stack: Stack, token: str, origin: str | None = None) -> tuple[int, str]:
    socket = await connect(stack, token, origin)
    try:
        await asyncio.wait_for(socket.recv(), timeout=5)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("the socket was not closed")


def _forge(secret: str, **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "role": "follower",
        "iss": "copytrade",
        "aud": "copytrade-api-ws",
        "iat": now,
        "exp": now + 30,
        "jti": uuid.uuid4().hex,  # socket tokens are spent by their jti
        **overrides,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_refusals_close_with_1008(api: Api, stack: Stack) -> None:
    _, token = await api.user("follower")
    secret = stack.env["COPYTRADE_JWT_SECRET"]
    good = await ws_token(api, token)
    assert await _refused(stack, good, origin="http://evil.example") == (1008, "origin not allowed")
    forged = _forge("not-the-server-secret-not-the-server-secret")
    assert await _refused(stack, forged) == (1008, "invalid token")
    expired = _forge(secret, exp=int(time.time()) - 60, iat=int(time.time()) - 120)
    assert await _refused(stack, expired) == (1008, "token expired")
    # An access token is not a WebSocket token.
    assert (await _refused(stack, token))[0] == 1008
    # A session ends when the access token behind it expires.
    short = _forge(secret, sub=str(uuid.uuid4()), sexp=int(time.time()) + 2)
    socket = await connect(stack, short)
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(socket.recv(), timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "session expired")
    assert 0.5 < time.monotonic() - started < 5
    metrics = (await api.http.get("/metrics")).text
    assert 'copytrade_ws_refused_total{reason="origin not allowed"}' in metrics


async def test_a_slow_client_gets_resync_and_never_slows_others(api: Api, stack: Stack) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    follower = await api.follower(master_id, {"mode": "fixed", "qty": "1"})
    # The slow client never reads: its socket buffers fill, then its queue overflows.
    slow = await connect(stack, await ws_token(api, follower["token"]))
    fast = Collector(await connect(stack, await ws_token(api, follower["token"])))
    try:
        responses = await asyncio.gather(
            *(api.order(master, master_account, qty="1", symbol="BURST") for _ in range(60))
        )
        ids = {r.json()["order_id"] for r in responses}

        async def fast_has_all() -> bool:
            seen = {e["order_id"] for e in fast.of("leg.updated") if e["status"] == "filled"}
            return ids <= seen or bool(fast.of("resync"))

        await eventually(fast_has_all, timeout_s=30)
        assert ids <= {e["order_id"] for e in fast.of("leg.updated")}
    finally:
        await slow.close()
        await fast.close()


async def test_a_client_frame_over_64_kib_closes_the_socket(api: Api, stack: Stack) -> None:
    """The dashboard reads nothing from its clients: the API's server takes frames up to 64 KiB
    (services/api/__main__.py) and closes the socket with 1009 past that."""
    _, token = await api.user("follower")
    socket = await connect(stack, await ws_token(api, token))
    await socket.send("x" * 1_000)  # a small frame is read and ignored
    await socket.send("x" * 70_000)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(socket.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value
