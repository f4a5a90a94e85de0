"""A master's orders: POST/GET /v1/orders, GET/PATCH /v1/orders/{id}, POST …/cancel."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from replication.errors import Fatal
from schemas.api import CancelAccepted, OrderAccepted, OrderCreate, OrderOut, OrderReplace
from schemas.messages import SWEEP_NOW_SUBJECT
from services.api.deps import Container, Deps, MasterAuth
from services.api.errors import (
    AccountDeleting,
    AccountNotFound,
    BrokerWouldRefuse,
    IdempotencyConflict,
    OrderCanceled,
    OrderNotFound,
    UnexpectedPrice,
)
from services.api.links import ORDER_ACCEPTED, ORDER_REPLACED
from services.api.views import order_out
from services.app.order_messages import order_message_from_row
from services.app.targets import broker_for
from services.infra import bus
from services.infra.crypto import CredentialError
from services.infra.db.fast import fast_connect
from services.infra.db.repositories.accounts import get_account, get_sealed_account
from services.infra.db.repositories.orders import (
    MasterOrder,
    get_master_order,
    get_master_order_by_client_id,
    insert_master_order,
    list_master_orders,
    order_progress,
    orders_progress,
    request_cancel,
    request_replace,
)
from services.infra.logs import bind_log_context
from services.infra.metrics import ORDER_PUBLISH, ORDERS_INGESTED, labelled

log = logging.getLogger("copytrade.api")

router = APIRouter()


def _request_hash(body: OrderCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def recent_orders(c: Container, master_id: str, limit: int) -> list[OrderOut]:
    """The master's newest orders with their progress (three queries, whatever the limit)."""
    async with c.engine.connect() as conn:
        rows = await list_master_orders(conn, master_id, limit)
        progress = await orders_progress(conn, [str(row.id) for row in rows])
    return [order_out(row, progress[str(row.id)]) for row in rows]


async def _publish(c: Container, row: MasterOrder) -> None:
    started = time.perf_counter()
    try:
        await bus.publish_order(c.js, order_message_from_row(row), timeout_s=2.0)
    except Exception:
        # The order is durable in PostgreSQL; the sweeper's outbox pass publishes it.
        log.warning("publish of order %s failed; left to the outbox", row.id, exc_info=True)
        return
    ORDER_PUBLISH.observe(time.perf_counter() - started)
    c.published.add(str(row.id))


async def _insert_or_replay(
    c: Container, body: OrderCreate, master_id: str, request_hash: str
) -> tuple[MasterOrder, bool]:
    """Store the order, or find the one stored under its client_order_id (a replay). The
    INSERT is one autocommit statement on asyncpg: committed when it returns, one round trip."""
    async with fast_connect(c.engine) as conn:
        row = await insert_master_order(
            conn,
            {
                "id": str(uuid.uuid4()),
                "master_id": master_id,
                "account_id": str(body.account_id),
                "client_order_id": body.client_order_id,
                "request_hash": request_hash,
                "symbol": body.symbol,
                "side": body.side.value,
                "qty": body.qty,
                "type": body.type.value,
                "limit_price": body.limit_price,
                "stop_price": body.stop_price,
                "time_in_force": body.time_in_force.value,
            },
        )
        if row is not None:
            return row, False
        account = await get_account(conn, str(body.account_id), master_id)
        if account is None:
            raise AccountNotFound()
        row = await get_master_order_by_client_id(conn, master_id, body.client_order_id)
        if row is None and account.deleting_at is not None:
            raise AccountDeleting()  # no new orders from an account being deleted
        assert row is not None
        return row, True


async def _admit(c: Container, body: OrderCreate, master_id: str) -> None:
    """Refuse (422) an order the master's broker would refuse; a replay is never re-judged
    (looked up only when the checks would refuse: no query per order for the rare replay)."""
    async with fast_connect(c.engine) as conn:
        account = await get_sealed_account(conn, str(body.account_id), master_id)
    if account is None:
        raise AccountNotFound()
    try:
        broker = broker_for(c.factory, c.cipher, account)
    except (CredentialError, Fatal):
        # Stored credentials that no longer open or parse: like a snapshot the broker does not
        # give in time, not held against the order (its own leg then fails with its reason).
        log.warning(
            "ingest checks skipped: the credentials of account %s do not open", account.account_id
        )
        return
    refused = await c.admission.check(
        str(account.account_id),
        account.broker,
        broker,
        (body.symbol, body.side, body.qty, body.type, body.time_in_force, body.limit_price),
    )
    if refused is not None:
        async with c.engine.connect() as conn:
            if await get_master_order_by_client_id(conn, master_id, body.client_order_id):
                return  # a replay: the order stored under this client id stands
        ORDERS_INGESTED.labels("refused").inc()
        raise BrokerWouldRefuse(refused.code, refused.message)


@router.post("/v1/orders", status_code=202, response_model=OrderAccepted, responses=ORDER_ACCEPTED)
async def create_order(body: OrderCreate, user: MasterAuth, c: Deps) -> Response:
    await _admit(c, body, user.user_id)
    request_hash = _request_hash(body)
    row, replay = await _insert_or_replay(c, body, user.user_id, request_hash)
    bind_log_context(order_id=row.id, account_id=body.account_id)
    if replay and row.request_hash != request_hash:
        ORDERS_INGESTED.labels("conflict").inc()
        raise IdempotencyConflict(details={"order_id": str(row.id)})
    if row.published_at is None:
        await _publish(c, row)
    labelled(ORDERS_INGESTED, "replayed" if replay else "accepted").inc()
    # The answer as OrderAccepted declares it, written directly: FastAPI would otherwise
    # validate and serialize a model per order (tests/e2e check the body against the schema).
    accepted = {"order_id": str(row.id), "client_order_id": row.client_order_id}
    return JSONResponse({**accepted, "status": "accepted"}, status_code=202)


@router.get("/v1/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: UUID, user: MasterAuth, c: Deps) -> OrderOut:
    async with c.engine.connect() as conn:
        row = await get_master_order(conn, str(order_id), user.user_id)
        if row is None:
            raise OrderNotFound()
        progress = await order_progress(conn, str(order_id))
    return order_out(row, progress)


# GET /v1/orders (pages, since/until, CSV) is served by services/api/routers/history.py.


@router.patch(
    "/v1/orders/{order_id}",
    status_code=202,
    response_model=OrderAccepted,
    responses=ORDER_REPLACED,
)
async def replace_order(
    order_id: UUID, body: OrderReplace, user: MasterAuth, c: Deps
) -> OrderAccepted:
    """Change quantity or prices; open legs are replaced at their brokers (same sizing)."""
    async with c.engine.begin() as conn:
        current = await get_master_order(conn, str(order_id), user.user_id)
        if current is None:
            raise OrderNotFound()
        kind = current.type
        if body.limit_price is not None and kind not in ("limit", "stop_limit"):
            raise UnexpectedPrice(f"a {kind} order takes no limit_price")
        if body.stop_price is not None and kind not in ("stop", "stop_limit"):
            raise UnexpectedPrice(f"a {kind} order takes no stop_price")
        row = await request_replace(
            conn, str(order_id), user.user_id, body.qty, body.limit_price, body.stop_price
        )
        if row is None:
            raise OrderCanceled()
    await c.nc.publish(SWEEP_NOW_SUBJECT, str(order_id).encode())
    return OrderAccepted(
        order_id=str(order_id), client_order_id=row.client_order_id, status="replacing"
    )


@router.post("/v1/orders/{order_id}/cancel", status_code=202, response_model=CancelAccepted)
async def cancel_order(order_id: UUID, user: MasterAuth, c: Deps) -> CancelAccepted:
    """Cancel the master order and every open leg of it, at every broker."""
    async with c.engine.begin() as conn:
        row = await request_cancel(conn, str(order_id), user.user_id)
    if row is None:
        raise OrderNotFound()
    await c.nc.publish(SWEEP_NOW_SUBJECT, str(order_id).encode())
    return CancelAccepted(order_id=str(order_id), cancel_requested=True)
