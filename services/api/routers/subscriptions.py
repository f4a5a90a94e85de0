"""A follower's subscriptions to masters: POST/GET /v1/subscriptions, PATCH/DELETE one."""

from __future__ import annotations

import uuid
from uuid import UUID

from fastapi import APIRouter, Response

from schemas.api import PositionsChoice, SubscriptionCreate, SubscriptionOut, SubscriptionPatch
from services.api.consent import admit_follower
from services.api.deps import Auth, Deps, FollowerAuth
from services.api.errors import (
    AccountDeleting,
    AccountNotFound,
    SubscriptionExists,
    SubscriptionNotFound,
    Unprocessable,
)
from services.api.links import SUBSCRIPTION_CREATED
from services.api.views import subscription_out
from services.app.notifications import subscriptions_ended
from services.infra.db.repositories.accounts import get_account
from services.infra.db.repositories.base import Conflict
from services.infra.db.repositories.flattens import (
    EndedSubscription,
    drop_subscription,
    end_flat_subscriptions,
    end_subscription,
    request_flatten,
)
from services.infra.db.repositories.subscriptions import (
    insert_subscription,
    subscriptions_of_follower,
    update_subscription,
)

router = APIRouter()


@router.post(
    "/v1/subscriptions",
    status_code=201,
    response_model=SubscriptionOut,
    responses=SUBSCRIPTION_CREATED,
)
async def create_subscription(
    body: SubscriptionCreate, user: FollowerAuth, c: Deps
) -> SubscriptionOut:
    values = body.model_dump(mode="json", exclude_none=True)
    async with c.engine.begin() as conn:
        account = await get_account(conn, str(body.account_id), user.user_id)
        if account is None:
            raise AccountNotFound()
        if account.deleting_at is not None:
            raise AccountDeleting()
        await admit_follower(conn, str(body.master_id), body.invite_code)  # 404 / 403
        try:
            row = await insert_subscription(
                conn,
                {
                    "id": str(uuid.uuid4()),
                    "follower_id": user.user_id,
                    "master_id": str(body.master_id),
                    "account_id": str(body.account_id),
                    "sizing": values["sizing"],
                    "caps": values.get("caps", {}),
                    "filters": values.get("filters", {}),
                    "paused": body.paused,
                    "on_master_rejected": body.on_master_rejected,
                },
            )
        except Conflict as exc:
            raise SubscriptionExists() from exc
    return subscription_out(row)


@router.get("/v1/subscriptions", response_model=list[SubscriptionOut])
async def list_subscriptions(user: Auth, c: Deps) -> list[SubscriptionOut]:
    async with c.engine.connect() as conn:
        rows = await subscriptions_of_follower(conn, user.user_id)
    return [subscription_out(row) for row in rows]


@router.patch("/v1/subscriptions/{subscription_id}", response_model=SubscriptionOut)
async def patch_subscription(
    subscription_id: UUID, body: SubscriptionPatch, user: Auth, c: Deps
) -> SubscriptionOut:
    changes = body.model_dump(mode="json", exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise Unprocessable("fields may be changed but not set to null")
    async with c.engine.begin() as conn:
        row = await update_subscription(conn, str(subscription_id), user.user_id, changes)
    if row is None:
        raise SubscriptionNotFound()
    return subscription_out(row)


@router.delete("/v1/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(
    subscription_id: UUID,
    user: Auth,
    c: Deps,
    positions: PositionsChoice = PositionsChoice.FOLLOW_EXITS,
) -> Response:
    """End a subscription. `follow_exits` (default): nothing new opens, the master's exits are
    copied until the copied positions are flat, then it is removed; `close`: the same, and its
    copied positions are closed now; `keep`: removed now, the positions become the follower's."""
    sid = str(subscription_id)
    ended: list[EndedSubscription] = []
    async with c.engine.begin() as conn:
        if positions is PositionsChoice.KEEP:
            dropped = await drop_subscription(conn, sid, user.user_id)
            found, ended = dropped is not None, [dropped] if dropped else []
        else:
            found = await end_subscription(conn, sid, user.user_id)
            if found and positions is PositionsChoice.CLOSE:
                await request_flatten(conn, f"subscription:{sid}", user.user_id)
            if found:
                ended = await end_flat_subscriptions(conn)  # nothing copied: it ends at once
    if not found:
        raise SubscriptionNotFound()
    await subscriptions_ended(c.js, ended)
    return Response(status_code=204)
