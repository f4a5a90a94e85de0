"""Webhooks per user: POST/GET /v1/webhooks, DELETE /v1/webhooks/{id}, and
GET /v1/webhooks/{id}/deliveries (each delivery with every attempt)."""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Response

from schemas.webhooks import DeliveryOut, WebhookCreate, WebhookCreated, WebhookOut
from services.api.deps import Auth, Deps
from services.api.errors import NotFound, Unprocessable
from services.api.views import delivery_out, webhook_out
from services.infra.addresses import AddressRefused, check_destination
from services.infra.db.repositories.webhooks import (
    delete_webhook,
    deliveries_of,
    insert_webhook,
    webhooks_of,
)
from services.infra.webhook_settings import WebhookSettings

router = APIRouter()
MAX_WEBHOOKS = 10


class WebhookNotFound(NotFound):
    code, default_message = "webhook_not_found", "no such webhook"


class WebhookRefused(Unprocessable):
    code = "webhook_address_refused"


@router.post("/v1/webhooks", status_code=201, response_model=WebhookCreated)
async def create_webhook(body: WebhookCreate, user: Auth, c: Deps) -> WebhookCreated:
    """Register a destination; the answer carries its signing secret, shown only here."""
    hooks = WebhookSettings.from_env()
    allow = c.settings.environment == "development" and hooks.allow_private_in_development
    try:
        await check_destination(body.url, allow)
    except AddressRefused as exc:
        raise WebhookRefused(str(exc), details={"reason": exc.code}) from None
    webhook_id = str(uuid.uuid4())
    secret = "whsec_" + secrets.token_urlsafe(32)
    sealed = c.cipher.encrypt(webhook_id, {"secret": secret})
    events = [e.value for e in body.events]
    async with c.engine.begin() as conn:
        if len(await webhooks_of(conn, user.user_id)) >= MAX_WEBHOOKS:
            raise Unprocessable(f"at most {MAX_WEBHOOKS} webhooks per user")
        row = await insert_webhook(conn, webhook_id, user.user_id, body.url, events, sealed)
    return WebhookCreated(**webhook_out(row).model_dump(), secret=secret)


@router.get("/v1/webhooks", response_model=list[WebhookOut])
async def list_webhooks(user: Auth, c: Deps) -> list[WebhookOut]:
    async with c.engine.connect() as conn:
        return [webhook_out(row) for row in await webhooks_of(conn, user.user_id)]


@router.delete("/v1/webhooks/{webhook_id}", status_code=204)
async def remove_webhook(webhook_id: UUID, user: Auth, c: Deps) -> Response:
    async with c.engine.begin() as conn:
        if not await delete_webhook(conn, str(webhook_id), user.user_id):
            raise WebhookNotFound()
    return Response(status_code=204)


@router.get("/v1/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryOut])
async def list_deliveries(
    webhook_id: UUID,
    user: Auth,
    c: Deps,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[DeliveryOut]:
    """The webhook's newest deliveries, each with every attempt (status code or error)."""
    async with c.engine.connect() as conn:
        if not any(h.id == webhook_id for h in await webhooks_of(conn, user.user_id)):
            raise WebhookNotFound()
        rows = await deliveries_of(conn, str(webhook_id), user.user_id, limit)
    return [delivery_out(row, attempts) for row, attempts in rows]
