"""Delivering webhooks: fan an event out into deliveries, and make one attempt of a delivery.

Every attempt is recorded (status code or error, duration). An attempt succeeds on a 2xx; a
delivery ends `delivered` on its first success (a redelivered message of a finished delivery
is acknowledged without calling anyone: exactly one success), or `failed` after the last
allowed attempt, announced on core NATS (FAILED_SUBJECT) as its permanent failure."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass

import httpx
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookEvent,
)
from services.infra.addresses import AddressRefused, check_destination
from services.infra.crypto import CredentialCipher
from services.infra.db.repositories.webhooks import (
    DeliveryTarget,
    add_deliveries,
    claim_attempt,
    record_attempt,
)
from services.infra.webhook_bus import FAILED_SUBJECT, publish_delivery
from services.infra.webhook_settings import WebhookSettings

log = logging.getLogger("copytrade.webhooks")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: v1=hex(HMAC-SHA256(secret, "<timestamp>.<body>"))."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


async def fan_out(engine: AsyncEngine, js: JetStreamContext, event: WebhookEvent) -> int:
    """One delivery per listening webhook of the event's user, each queued once."""
    async with engine.begin() as conn:
        ids = await add_deliveries(
            conn, event.user_id, event.type.value, event.event_id, event.model_dump(mode="json")
        )
    for delivery_id in ids:
        await publish_delivery(js, delivery_id)
    return len(ids)


@dataclass(frozen=True)
class Outcome:
    done: bool  # nothing more to do (delivered, failed for good, or already finished)
    retry_in_s: float = 0.0


@dataclass
class Deliverer:
    engine: AsyncEngine
    nc: NATS
    http: httpx.AsyncClient
    cipher: CredentialCipher
    settings: WebhookSettings
    allow_private: bool

    async def attempt(self, delivery_id: str) -> Outcome:
        async with self.engine.begin() as conn:
            target = await claim_attempt(conn, delivery_id)
        if target is None:
            return Outcome(done=True)
        code, error, elapsed_ms = await self._post(target)
        success = code is not None and 200 <= code < 300
        last = target.attempts >= self.settings.max_attempts
        final = "delivered" if success else ("failed" if last else None)
        async with self.engine.begin() as conn:
            await record_attempt(conn, target, code, error, elapsed_ms, final)
        if final == "failed":
            await self._announce_failure(target, code, error)
        if final is not None:
            return Outcome(done=True)
        return Outcome(done=False, retry_in_s=self.settings.backoff(target.attempts))

    async def _post(self, target: DeliveryTarget) -> tuple[int | None, str | None, float]:
        started = time.perf_counter()
        try:
            await check_destination(target.url, self.allow_private)
            secret = str(self.cipher.decrypt(str(target.webhook_id), target.secret)["secret"])
            body = json.dumps(target.payload, separators=(",", ":")).encode()
            now = int(time.time())
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: sign(secret, now, body),
                TIMESTAMP_HEADER: str(now),
                EVENT_HEADER: target.event,
                DELIVERY_HEADER: str(target.id),
            }
            response = await self.http.post(target.url, content=body, headers=headers)
            return response.status_code, None, (time.perf_counter() - started) * 1000
        except (httpx.HTTPError, AddressRefused, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            return None, error, (time.perf_counter() - started) * 1000

    async def _announce_failure(
        self, target: DeliveryTarget, code: int | None, error: str | None
    ) -> None:
        log.warning(
            "webhook delivery %s failed for good after %d attempts", target.id, target.attempts
        )
        failure = {
            "type": "webhook.failed",
            "delivery_id": str(target.id),
            "webhook_id": str(target.webhook_id),
            "event": target.event,
            "attempts": target.attempts,
            "last_status_code": code,
            "last_error": error,
        }
        await self.nc.publish(FAILED_SUBJECT, json.dumps(failure).encode())
