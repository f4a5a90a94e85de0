"""Gateway routing and backpressure with in-memory sockets."""

import asyncio
import json

from services.api.dashboard.gateway import RESYNC, Gateway
from tests.helpers import eventually


class FakeMsg:
    def __init__(self, subject: str, body: dict[str, object]) -> None:
        self.subject = subject
        self.data = json.dumps(body).encode()


class RecordingSocket:
    def __init__(self, stall: asyncio.Event | None = None) -> None:
        self.sent: list[str] = []
        self.stall = stall

    async def send_text(self, data: str) -> None:
        if self.stall is not None:
            await self.stall.wait()  # a client that stopped reading
        self.sent.append(data)


async def test_routing_by_user_and_role() -> None:
    gateway = Gateway()
    follower, other, master = RecordingSocket(), RecordingSocket(), RecordingSocket()
    clients = [
        gateway.register("f1", "follower", follower),
        gateway.register("f2", "follower", other),
        gateway.register("m1", "master", master),
    ]
    pumps = [asyncio.create_task(c.pump()) for c in clients]
    await gateway._on_leg(FakeMsg("events.legs.f1", {"type": "leg.updated", "leg_id": "x"}))
    await gateway._on_order(FakeMsg("events.orders.m1", {"type": "order.updated", "order_id": "o"}))
    # A master whose user id is also a follower subject never receives leg events.
    await gateway._on_leg(FakeMsg("events.legs.m1", {"type": "leg.updated", "leg_id": "y"}))
    # Markers behind everything above: each socket's queue is FIFO, so once a marker arrived,
    # anything wrongly routed to that socket before it has arrived too.
    await gateway._on_leg(FakeMsg("events.legs.f2", {"type": "leg.updated", "leg_id": "end"}))
    await gateway._on_order(
        FakeMsg("events.orders.m1", {"type": "order.updated", "order_id": "end"})
    )

    async def delivered() -> bool:
        return bool(follower.sent and other.sent and len(master.sent) >= 2)

    await eventually(delivered, timeout_s=2, interval_s=0.005)
    assert [json.loads(s)["leg_id"] for s in follower.sent] == ["x"]
    assert [json.loads(s)["leg_id"] for s in other.sent] == ["end"]
    assert [json.loads(s)["type"] for s in master.sent] == ["order.updated", "order.updated"]
    for pump in pumps:
        pump.cancel()
    for client in clients:
        gateway.unregister(client)
    assert gateway.clients == 0


async def test_overflow_becomes_one_resync_and_spares_other_clients() -> None:
    gateway = Gateway(queue_size=10)
    stall = asyncio.Event()
    slow_socket, fast_socket = RecordingSocket(stall), RecordingSocket()
    slow = gateway.register("f1", "follower", slow_socket)
    fast = gateway.register("f1", "follower", fast_socket)
    pumps = [asyncio.create_task(slow.pump()), asyncio.create_task(fast.pump())]
    for i in range(25):
        await gateway._on_leg(FakeMsg("events.legs.f1", {"type": "leg.updated", "leg_id": str(i)}))
        # Part of the scenario, not a wait: yield once per event so the fast client drains
        # as events arrive (a burst with no yield would overflow every queue).
        await asyncio.sleep(0)

    async def fast_done() -> bool:
        return len(fast_socket.sent) == 25

    await eventually(fast_done, timeout_s=2, interval_s=0.005)
    assert [json.loads(s)["leg_id"] for s in fast_socket.sent] == [str(i) for i in range(25)]
    assert slow.resyncs >= 1
    stall.set()

    async def slow_drained() -> bool:
        return RESYNC in slow_socket.sent and slow.queue.empty()

    await eventually(slow_drained, timeout_s=2, interval_s=0.005)
    # The slow client learns it missed events: it gets `resync`, then what came after.
    assert RESYNC in slow_socket.sent
    after = slow_socket.sent[slow_socket.sent.index(RESYNC) + 1 :]
    assert all(json.loads(s)["type"] == "leg.updated" for s in after)
    for pump in pumps:
        pump.cancel()


class FakeBatch:
    def __init__(self, subject: str, body: object) -> None:
        self.subject = subject
        self.data = json.dumps(body).encode()


async def test_a_batch_of_leg_events_reaches_each_follower_and_no_master() -> None:
    """Workers publish a settled batch's leg events as one JSON array on `events.legs`; each
    event goes to its own follower's sockets only (never to a master with the same id)."""
    gateway = Gateway()
    f1, f2, master = RecordingSocket(), RecordingSocket(), RecordingSocket()
    clients = [
        gateway.register("f1", "follower", f1),
        gateway.register("f2", "follower", f2),
        gateway.register("m1", "master", master),
    ]
    pumps = [asyncio.create_task(c.pump()) for c in clients]
    batch = [
        {"type": "leg.updated", "leg_id": "a", "follower_id": "f1"},
        {"type": "leg.updated", "leg_id": "b", "follower_id": "f2"},
        {"type": "leg.updated", "leg_id": "c", "follower_id": "nobody-connected"},
        {"type": "leg.updated", "leg_id": "x", "follower_id": ["not", "an", "id"]},
        "not an event",
        {"type": "leg.updated", "leg_id": "d", "follower_id": "m1"},
        {"type": "leg.updated", "leg_id": "e", "follower_id": "f1"},
    ]
    await gateway._on_legs(FakeBatch("events.legs", batch))
    await gateway._on_legs(FakeBatch("events.legs", {"not": "a list"}))  # ignored, no crash
    await gateway._on_order(FakeMsg("events.orders.m1", {"type": "order.updated", "order_id": "z"}))

    async def delivered() -> bool:
        return len(f1.sent) == 2 and len(f2.sent) == 1 and len(master.sent) == 1

    await eventually(delivered, timeout_s=2, interval_s=0.005)
    assert [json.loads(s)["leg_id"] for s in f1.sent] == ["a", "e"]
    assert [json.loads(s)["leg_id"] for s in f2.sent] == ["b"]
    assert [json.loads(s)["type"] for s in master.sent] == ["order.updated"]
    for pump in pumps:
        pump.cancel()
    for client in clients:
        gateway.unregister(client)


async def test_leg_events_are_published_in_bounded_batches() -> None:
    """publish_leg_events: one message per LEG_EVENTS_PER_MESSAGE legs, every leg once."""
    from datetime import UTC, datetime
    from decimal import Decimal
    from uuid import uuid4

    from services.app.events import LEG_EVENTS_PER_MESSAGE, publish_leg_events
    from services.infra.db.repositories.legs import SettledLeg

    class Recorder:
        def __init__(self) -> None:
            self.published: list[tuple[str, bytes]] = []

        async def publish(self, subject: str, payload: bytes) -> None:
            self.published.append((subject, payload))

    now = datetime.now(UTC)
    rows = [
        SettledLeg(
            uuid4(),
            uuid4(),
            uuid4(),
            uuid4(),
            uuid4(),
            uuid4(),
            "open",
            "AAPL",
            "buy",
            Decimal("1.50"),
            "accepted",
            None,
            f"cid{i}",
            f"b{i}",
            Decimal(0),
            now,
        )
        for i in range(LEG_EVENTS_PER_MESSAGE + 5)
    ]
    nc = Recorder()
    await publish_leg_events(nc, rows, now)  # type: ignore[arg-type]
    assert [subject for subject, _ in nc.published] == ["events.legs", "events.legs"]
    events = [e for _, payload in nc.published for e in json.loads(payload)]
    assert [e["leg_id"] for e in events] == [str(r.id) for r in rows]
    assert events[0]["qty"] == "1.5" and events[0]["type"] == "leg.updated"
    assert events[0]["follower_id"] == str(rows[0].follower_id)
