"""Replicator worker: pull master orders from JetStream and fan them out to follower brokers.

Per message: plan (pure) → record the legs in one bulk insert → ack → send with asyncio.gather
→ settle in one bulk update → publish leg events. A leg is recorded before anything is sent, so
a crash at any point leaves either no legs (the message is redelivered) or legs in doubt that
the sweeper resolves by looking them up at the broker. Nothing here ever resends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from prometheus_client import start_http_server
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from brokers.http import HttpClientPool, HttpSettings
from replication.model import PlannedLeg
from replication.plan import plan
from replication.state import LegStatus, transition
from schemas.messages import ORDERS_STREAM, OrderMessage
from services import bus
from services.brokerage import BrokerFactory
from services.crypto import CredentialCipher
from services.db import repositories as repo
from services.db.engine import make_engine
from services.events import publish_leg_events, publish_order_event
from services.logs import setup_logging
from services.metrics import FANOUT, FIRST_LEG, LEGS
from services.sending import place_once, request_from_leg
from services.settings import Settings
from services.targets import broker_for_row, target_from_row

log = logging.getLogger("copytrade.replicator")


class Replicator:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        nc: NATS,
        js: JetStreamContext,
        cipher: CredentialCipher,
        factory: BrokerFactory,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.nc = nc
        self.js = js
        self.cipher = cipher
        self.factory = factory
        self._host_limits: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.max_concurrent_per_host)
        )
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        psub = await self.js.pull_subscribe_bind(
            durable=bus.REPLICATOR_CONSUMER, stream=ORDERS_STREAM
        )
        limit = self.settings.max_orders_in_flight
        while not stop.is_set():
            room = limit - len(self._in_flight)
            if room <= 0:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await psub.fetch(batch=min(room, self.settings.fetch_batch), timeout=0.5)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception:
                log.exception("fetch failed; retrying")
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                task = asyncio.create_task(self.handle(message))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=self.settings.leg_lease_s)

    async def handle(self, message: Msg) -> None:
        try:
            order = OrderMessage.model_validate_json(message.data)
        except ValidationError:
            log.error("dropping malformed order message (seq %s)", message.metadata.sequence.stream)
            await message.term()
            return
        try:
            await self.replicate(order, message)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not acked (or acked with legs recorded): redelivery or the sweeper finishes the job.
            log.exception("replication of order %s failed", order.order_id)

    async def replicate(self, order: OrderMessage, message: Msg | None) -> None:
        async with self.engine.connect() as conn:
            rows = await repo.load_targets(conn, order.master_id)
        by_account = {str(row["account_id"]): row for row in rows}
        legs = plan(order, [target_from_row(row) for row in rows], datetime.now(UTC))
        to_record = [
            _with_status(leg, transition(leg.status, LegStatus.SUBMITTING))
            if leg.status is LegStatus.PLANNED
            else leg
            for leg in legs
        ]
        async with self.engine.begin() as conn:
            inserted = set(
                await repo.insert_legs(conn, order.master_id, to_record, self.settings.leg_lease_s)
            )
            await repo.mark_planned(conn, order.order_id)
        if message is not None:
            with contextlib.suppress(Exception):
                await message.ack()  # the legs are durable; a lost ack only means a redelivery
        mine = [leg for leg in to_record if leg.leg_id in inserted]
        to_send = [leg for leg in mine if leg.status is LegStatus.SUBMITTING]
        skipped = [leg.leg_id for leg in mine if leg.status is LegStatus.SKIPPED]
        LEGS.labels("skipped").inc(len(skipped))

        first_answer: list[float] = []
        renewal = asyncio.create_task(self._renew_leases([leg.leg_id for leg in to_send]))
        try:
            outcomes = await asyncio.gather(
                *(self._send(leg, by_account[leg.account_id], first_answer) for leg in to_send)
            )
        finally:
            renewal.cancel()
        async with self.engine.begin() as conn:
            settled_rows = await repo.settle_legs(conn, outcomes)
            skipped_rows = await repo.list_copies_by_ids(conn, skipped) if skipped else []
            progress = await repo.order_progress(conn, order.order_id)
        for row in settled_rows:
            LEGS.labels(row["status"]).inc()
        if first_answer:
            FIRST_LEG.observe(max(0.0, first_answer[0] - order.created_at.timestamp()))
        if progress["fanout_ms"] is not None:
            FANOUT.observe(progress["fanout_ms"] / 1000)
        await publish_leg_events(self.nc, [*skipped_rows, *settled_rows], order.created_at)
        await publish_order_event(self.nc, order.order_id, order.master_id, progress)
        log.info(
            "order %s: %d legs (%d sent, %d skipped) in %s ms",
            order.order_id,
            len(legs),
            len(to_send),
            len(skipped),
            progress["fanout_ms"],
        )

    async def _renew_leases(self, leg_ids: list[str]) -> None:
        """While this worker sends, keep its legs' leases fresh (a third of the lease apart)."""
        if not leg_ids:
            return
        interval = self.settings.leg_lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self.engine.begin() as conn:
                    await repo.renew_leases(conn, leg_ids, self.settings.leg_lease_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lease renewal failed", exc_info=True)

    async def _send(
        self, leg: PlannedLeg, row: dict[str, Any], first_answer: list[float]
    ) -> repo.LegOutcome:
        broker = broker_for_row(self.factory, self.cipher, row)
        async with self._host_limits[leg.broker]:
            outcome = await place_once(
                broker,
                leg.broker,
                leg.leg_id,
                request_from_leg(leg),
                deadline_s=self.settings.leg_lease_s * 0.5,
                recheck_s=self.settings.unknown_recheck_s,
            )
        if not first_answer:
            first_answer.append(time.time())
        return outcome


def _with_status(leg: PlannedLeg, status: LegStatus) -> PlannedLeg:
    return replace(leg, status=status)


async def main_async(settings: Settings) -> None:
    nats_url, database_url, _ = settings.require_urls()
    _, keys = settings.require_secrets()
    engine = make_engine(database_url, pool_size=5, max_overflow=5)
    nc = await bus.connect(nats_url, "copytrade-replicator")
    js = nc.jetstream()
    await bus.ensure_stream(js)
    await bus.ensure_consumer(js, settings.consumer_ack_wait_s, settings.max_deliver)
    pool = HttpClientPool(
        HttpSettings(
            connect_timeout_s=settings.broker_connect_timeout_s,
            read_timeout_s=settings.broker_read_timeout_s,
        )
    )
    factory = BrokerFactory(pool, settings.sim_url)
    replicator = Replicator(settings, engine, nc, js, CredentialCipher.from_setting(keys), factory)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("replicator started")
    try:
        await replicator.run(stop)
    finally:
        await pool.aclose()
        await bus.close(nc)
        await engine.dispose()
        log.info("replicator stopped")


def main() -> None:
    setup_logging()
    settings = Settings.from_env()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
    import uvloop

    uvloop.run(main_async(settings))


if __name__ == "__main__":
    main()
