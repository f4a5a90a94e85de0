"""The notifier: delivers webhooks from the durable JetStream queue (services/infra/webhook_bus).

Two pull loops: events (each fanned out into one delivery per listening webhook) and
deliveries (one attempt each; a failed attempt is `nak`ed with the backoff as its delay, so
JetStream redelivers it then, to this or another notifier process)."""

from __future__ import annotations

import asyncio
import logging

import httpx
from nats.aio.msg import Msg

from schemas.webhooks import DeliveryMessage, WebhookEvent
from services.app.webhook_delivery import Deliverer, fan_out
from services.infra import webhook_bus
from services.infra.settings import Settings
from services.infra.webhook_settings import WebhookSettings
from services.infra.wiring import Runtime, runtime, serve, stop_on_signals
from services.worker.consuming import parse, pull

log = logging.getLogger("copytrade.notifier")


class Notifier:
    def __init__(self, rt: Runtime, deliverer: Deliverer) -> None:
        self.rt = rt
        self.deliverer = deliverer

    async def on_event(self, msg: Msg) -> None:
        event = await parse(WebhookEvent, msg)
        if event is None:
            return
        try:
            await fan_out(self.rt.engine, self.rt.js, event)
        except Exception:
            log.exception("fan-out of event %s failed; redelivered later", event.event_id)
            await msg.nak(delay=1.0)
            return
        await msg.ack()

    async def on_delivery(self, msg: Msg) -> None:
        message = await parse(DeliveryMessage, msg)
        if message is None:
            return
        try:
            outcome = await self.deliverer.attempt(message.delivery_id)
        except Exception:
            log.exception("delivery %s: attempt not recorded; redelivered", message.delivery_id)
            await msg.nak(delay=self.deliverer.settings.backoff_s)
            return
        if outcome.done:
            await msg.ack()
        else:
            await msg.nak(delay=outcome.retry_in_s)

    async def run(self, stop: asyncio.Event) -> None:
        js = self.rt.js
        events = await js.pull_subscribe_bind(
            durable=webhook_bus.EVENTS_CONSUMER, stream=webhook_bus.STREAM
        )
        deliveries = await js.pull_subscribe_bind(
            durable=webhook_bus.DELIVERIES_CONSUMER, stream=webhook_bus.STREAM
        )
        in_flight: set[asyncio.Task[None]] = set()
        await asyncio.gather(
            pull(events, self.on_event, stop, 16, 16, in_flight),
            pull(deliveries, self.on_delivery, stop, 64, 32, in_flight),
        )
        if in_flight:
            await asyncio.wait(in_flight, timeout=10)


async def main_async(settings: Settings) -> None:
    hooks = WebhookSettings.from_env()
    allow_private = settings.environment == "development" and hooks.allow_private_in_development
    async with runtime(settings, "notifier", pool_size=3) as rt:
        await webhook_bus.ensure_consumers(rt.js, ack_wait_s=hooks.timeout_s + 30)
        async with httpx.AsyncClient(
            timeout=hooks.timeout_s, follow_redirects=False, trust_env=False
        ) as http:
            deliverer = Deliverer(rt.engine, rt.nc, http, rt.cipher, hooks, allow_private)
            log.info("notifier started")
            await Notifier(rt, deliverer).run(stop_on_signals())
    log.info("notifier stopped")


if __name__ == "__main__":
    serve(main_async)
