"""Webhooks (API.md, "v1 additions"): bodies of /v1/webhooks, the queue messages of the
notifier and the body every delivery carries."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from schemas.common import Strict, Text

SIGNATURE_HEADER = "Copytrade-Signature"  # "v1=" + hex HMAC-SHA256(secret, f"{ts}.{body}")
TIMESTAMP_HEADER = "Copytrade-Timestamp"  # unix seconds of this attempt
EVENT_HEADER = "Copytrade-Event"
DELIVERY_HEADER = "Copytrade-Delivery"  # the same on every attempt of one delivery


class WebhookEventType(StrEnum):
    LEG_FAILED = "leg.failed"
    ACCOUNT_HALTED = "account.halted"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    ORDER_DEAD_LETTERED = "order.dead_lettered"
    SUBSCRIPTION_ENDED = "subscription.ended"


class WebhookCreate(Strict):
    url: Annotated[Text, Field(min_length=8, max_length=2048)]
    events: list[WebhookEventType] = Field(min_length=1, max_length=5)

    @field_validator("events")
    @classmethod
    def _unique(cls, events: list[WebhookEventType]) -> list[WebhookEventType]:
        return sorted(set(events))


class WebhookOut(BaseModel):
    webhook_id: str
    url: str
    events: list[str]
    created_at: datetime


class WebhookCreated(WebhookOut):
    """The signing secret is shown once, here."""

    secret: str


class AttemptOut(BaseModel):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    at: datetime


class DeliveryOut(BaseModel):
    delivery_id: str
    event_id: str
    event: str
    status: str  # pending | delivered | failed
    attempts: list[AttemptOut]
    created_at: datetime
    finished_at: datetime | None


class WebhookEvent(BaseModel):
    """What a producer publishes (JetStream, subject WEBHOOK_EVENTS_SUBJECT), and the body of
    each delivery: `{event_id, type, user_id, occurred_at, data}`."""

    event_id: str
    type: WebhookEventType
    user_id: str
    occurred_at: datetime
    data: dict[str, Any]


class DeliveryMessage(BaseModel):
    delivery_id: str
