"""WebSocket gateway: core NATS events → the browser clients allowed to see them.

One NATS subscription per event family per gateway process (replicas each get every event and
keep what their own clients need). Routing is by user: a follower's sockets get the
`leg.updated` events of its own legs; a master's sockets get `order.updated` aggregates of its
own orders, never follower identities or accounts.

Backpressure: each socket has a bounded queue drained by its own sender task, so a slow client
never delays the others, the NATS callback, or the replicators. When a queue overflows, what it
held is dropped and the client is told `resync` (reload state over HTTP), then live events go on.

Metrics:
  copytrade_ws_clients{role}                 connected sockets
  copytrade_ws_events_sent_total{type}       events written to sockets
  copytrade_ws_resyncs_total                 queue overflows answered with `resync`
  copytrade_ws_refused_total{reason}         connections refused (close 1008)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge

from schemas.messages import LEG_EVENTS_SUBJECT

log = logging.getLogger("copytrade.dashboard")

WS_CLIENTS = Gauge("copytrade_ws_clients", "Connected WebSocket clients", ["role"])
WS_EVENTS = Counter("copytrade_ws_events_sent_total", "Events sent to WebSocket clients", ["type"])
WS_RESYNCS = Counter("copytrade_ws_resyncs_total", "Client queues that overflowed (resync sent)")
WS_REFUSED = Counter("copytrade_ws_refused_total", "WebSocket connections refused", ["reason"])

RESYNC = json.dumps({"type": "resync"})


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...


@dataclass(eq=False)
class Client:
    user_id: str
    role: str
    socket: Socket
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=256))
    resyncs: int = 0

    def offer(self, payload: str) -> None:
        """Queue an event without ever waiting; overflow turns into a single `resync`."""
        try:
            self.queue.put_nowait(payload)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)
            self.resyncs += 1
            WS_RESYNCS.inc()

    async def pump(self) -> None:
        """Write queued events to the socket until cancelled or the socket fails."""
        while True:
            payload = await self.queue.get()
            await self.socket.send_text(payload)
            WS_EVENTS.labels(_event_type(payload)).inc()


def _event_type(payload: str) -> str:
    # Cheap: events start with {"type":"…" as serialized by pydantic / json.dumps.
    start = payload.find('"type":')
    if start < 0:
        return "unknown"
    rest = payload[start + 7 :].lstrip(' "')
    return rest.split('"', 1)[0]


class Gateway:
    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._by_user: dict[str, set[Client]] = defaultdict(set)
        self._subscriptions: list[Any] = []

    @property
    def clients(self) -> int:
        return sum(len(clients) for clients in self._by_user.values())

    async def start(self, nc: NATS) -> None:
        self._subscriptions = [
            await nc.subscribe(LEG_EVENTS_SUBJECT, cb=self._on_legs),
            # One event per message: what workers of earlier releases publish (rolling deploys).
            await nc.subscribe("events.legs.*", cb=self._on_leg),
            await nc.subscribe("events.orders.*", cb=self._on_order),
        ]

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    def sockets_of(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def register(self, user_id: str, role: str, socket: Socket) -> Client:
        client = Client(user_id, role, socket, asyncio.Queue(maxsize=self.queue_size))
        self._by_user[user_id].add(client)
        WS_CLIENTS.labels(role).inc()
        return client

    def unregister(self, client: Client) -> None:
        clients = self._by_user.get(client.user_id)
        if clients is not None and client in clients:
            clients.discard(client)
            WS_CLIENTS.labels(client.role).dec()
            if not clients:
                del self._by_user[client.user_id]

    def _deliver(self, user_id: str, role: str, payload: str) -> None:
        for client in self._by_user.get(user_id, ()):
            if client.role == role:
                client.offer(payload)

    async def _on_leg(self, msg: Msg) -> None:
        # Subject events.legs.<follower_id>: route without parsing the body.
        self._deliver(msg.subject.rsplit(".", 1)[-1], "follower", msg.data.decode())

    async def _on_legs(self, msg: Msg) -> None:
        # A batch of many followers' events: each is serialized again only for a follower
        # with a socket here (most followers of a fan-out have none).
        try:
            events = json.loads(msg.data)
        except ValueError:
            log.warning("unreadable leg event batch on %s", msg.subject)
            return
        for event in events if isinstance(events, list) else ():
            follower_id = event.get("follower_id") if isinstance(event, dict) else None
            if isinstance(follower_id, str) and follower_id in self._by_user:
                self._deliver(follower_id, "follower", json.dumps(event, separators=(",", ":")))

    async def _on_order(self, msg: Msg) -> None:
        self._deliver(msg.subject.rsplit(".", 1)[-1], "master", msg.data.decode())
