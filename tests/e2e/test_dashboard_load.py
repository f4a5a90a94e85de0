"""1,000 WebSocket clients on one gateway while orders flow (loopback, bounded in time)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psutil
import websockets
from websockets.exceptions import ConnectionClosed

from tests.helpers import Api, Stack, eventually

FOLLOWERS = 100
SOCKETS_PER_FOLLOWER = 10
ORDERS = 5


async def test_thousand_clients_each_get_their_events(api: Api, stack: Stack) -> None:
    master_id, master = await api.user("master")
    master_account, _ = await api.sim_account(master)
    limit = asyncio.Semaphore(25)

    async def make() -> dict[str, str]:
        async with limit:
            return await api.follower(master_id, {"mode": "fixed", "qty": "1"})

    followers = await asyncio.gather(*(make() for _ in range(FOLLOWERS)))
    url = stack.api_url.replace("http://", "ws://") + "/v1/ws"
    received: dict[int, list[dict[str, Any]]] = {}
    opened = asyncio.Semaphore(100)

    async def client(
        index: int, follower: dict[str, str], ready: asyncio.Event, done: asyncio.Event
    ) -> None:
        async with opened:
            token = (
                await api.http.post("/v1/ws/token", headers=api.auth(follower["token"]))
            ).json()["token"]
            socket = await websockets.connect(
                url,
                subprotocols=["copytrade.v1", token],  # type: ignore[list-item]
                origin=stack.api_url,
                open_timeout=30,
            )
        events: list[dict[str, Any]] = []
        received[index] = events
        ready.set()
        try:
            while not done.is_set():
                try:
                    raw = await asyncio.wait_for(socket.recv(), timeout=0.5)
                except TimeoutError:
                    continue
                events.append(json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            await socket.close()

    done = asyncio.Event()
    readies = [asyncio.Event() for _ in range(FOLLOWERS * SOCKETS_PER_FOLLOWER)]
    started = time.monotonic()
    tasks = [
        asyncio.create_task(client(i, followers[i % FOLLOWERS], readies[i], done))
        for i in range(len(readies))
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=120)
    connect_s = time.monotonic() - started
    api_pid = next(c.pid for c in stack.children if c.name == "api")
    rss_connected = psutil.Process(api_pid).memory_info().rss

    orders = []
    for _ in range(ORDERS):
        response = await api.order(master, master_account, qty="1", symbol="LOAD")
        orders.append(response.json()["order_id"])

    def complete(events: list[dict[str, Any]]) -> bool:
        if any(e["type"] == "resync" for e in events):
            return True  # told to reload: allowed, never silent
        filled = {
            e["order_id"] for e in events if e["type"] == "leg.updated" and e["status"] == "filled"
        }
        return set(orders) <= filled

    async def everyone() -> bool:
        return all(complete(received[i]) for i in range(len(readies)))

    try:
        await eventually(
            everyone,
            timeout_s=60,
            interval_s=0.25,
            message="some client missed an event without a resync",
        )
    finally:
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    rss_peak = psutil.Process(api_pid).memory_info().rss
    resyncs = sum(1 for events in received.values() if any(e["type"] == "resync" for e in events))
    wrong = [
        e
        for i, events in received.items()
        for e in events
        if e["type"] == "leg.updated" and e["account_id"] != followers[i % FOLLOWERS]["account_id"]
    ]
    assert wrong == []
    print(
        f"\n1,000 sockets: connected in {connect_s:.1f}s; gateway RSS "
        f"{rss_connected / 2**20:.0f} MiB connected, {rss_peak / 2**20:.0f} MiB after "
        f"{ORDERS} orders; clients told to resync: {resyncs}"
    )
