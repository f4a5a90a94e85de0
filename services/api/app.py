"""The ingest API (FastAPI): auth, accounts, subscriptions, master orders, copies, ops."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, Query, Request, Response, WebSocket, WebSocketDisconnect
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.api import (
    AccountCreate,
    AccountOut,
    CancelAccepted,
    CopyOut,
    HaltState,
    LegCounts,
    MasterExecution,
    OrderAccepted,
    OrderCreate,
    OrderOut,
    OrderReplace,
    RegisterRequest,
    RegisterResponse,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionPatch,
    TokenRequest,
    TokenResponse,
    WsToken,
)
from schemas.messages import SWEEP_NOW_SUBJECT
from services.api.dashboard.gateway import WS_REFUSED, Gateway
from services.api.errors import ApiError, install
from services.app.order_messages import order_message_from_row
from services.app.outbox import PublishedMarks
from services.infra import bus
from services.infra.auth import Principal, TokenError, TokenIssuer, hash_password, verify_password
from services.infra.brokerage import validate_credentials
from services.infra.crypto import CredentialCipher
from services.infra.db.engine import make_engine
from services.infra.db.repositories.accounts import (
    accounts_of_user,
    get_account,
    insert_account,
    set_account_halted,
)
from services.infra.db.repositories.base import Conflict
from services.infra.db.repositories.halts import (
    GLOBAL_HALT_SCOPE,
    halt_scopes,
    master_halt_scope,
    set_halt,
)
from services.infra.db.repositories.legs import list_copies
from services.infra.db.repositories.orders import (
    get_master_order,
    get_master_order_by_client_id,
    insert_master_order,
    list_master_orders,
    order_progress,
    request_cancel,
    request_replace,
)
from services.infra.db.repositories.subscriptions import (
    insert_subscription,
    remove_subscription,
    subscriptions_of_follower,
    update_subscription,
)
from services.infra.db.repositories.users import create_user, get_user, get_user_by_email
from services.infra.metrics import ORDER_PUBLISH, ORDERS_INGESTED
from services.infra.settings import Settings

log = logging.getLogger("copytrade.api")


@dataclass
class Container:
    settings: Settings
    engine: AsyncEngine
    nc: NATS
    js: JetStreamContext
    redis: aioredis.Redis
    cipher: CredentialCipher
    issuer: TokenIssuer
    dummy_hash: str
    gateway: Gateway
    published: PublishedMarks


async def container(request: Request) -> Container:
    c: Container = request.app.state.container
    return c


Deps = Annotated[Container, Depends(container)]


async def principal(request: Request, c: Deps) -> Principal:
    # async on purpose (no I/O here): a plain def would hop to a worker thread per request.
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "unauthorized",
            "a bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return c.issuer.verify(token.strip())
    except TokenError as exc:
        code = "token_expired" if "expired" in str(exc) else "invalid_token"
        raise ApiError(401, code, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


Auth = Annotated[Principal, Depends(principal)]


def require(user: Principal, *roles: str) -> None:
    if user.role not in roles:
        raise ApiError(403, "forbidden", f"this needs the {' or '.join(roles)} role")


def _account_out(row: dict[str, Any]) -> AccountOut:
    return AccountOut(
        account_id=str(row["id"]),
        broker=row["broker"],
        label=row["label"],
        halted=row["halted"],
        created_at=row["created_at"],
    )


def _subscription_out(row: dict[str, Any]) -> SubscriptionOut:
    return SubscriptionOut(
        subscription_id=str(row["id"]),
        master_id=str(row["master_id"]),
        account_id=str(row["account_id"]),
        sizing=row["sizing"],
        caps=row["caps"],
        filters=row["filters"],
        paused=row["paused"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _request_hash(body: OrderCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _copy_out(row: dict[str, Any]) -> CopyOut:
    return CopyOut(
        leg_id=str(row["id"]),
        order_id=str(row["order_id"]),
        master_id=str(row["master_id"]),
        account_id=str(row["account_id"]),
        symbol=row["symbol"],
        side=row["side"],
        qty=row["qty"],
        status=row["status"],
        reason=row["reason"],
        details=row["details"],
        client_order_id=row["client_order_id"],
        broker_order_id=row["broker_order_id"],
        filled_qty=row["filled_qty"],
        filled_avg_price=row["filled_avg_price"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _order_out(row: dict[str, Any], progress: dict[str, Any]) -> OrderOut:
    return OrderOut(
        order_id=str(row["id"]),
        client_order_id=row["client_order_id"],
        account_id=str(row["account_id"]),
        symbol=row["symbol"],
        side=row["side"],
        qty=row["qty"],
        type=row["type"],
        limit_price=row["limit_price"],
        stop_price=row["stop_price"],
        time_in_force=row["time_in_force"],
        status=progress["status"],
        created_at=row["created_at"],
        legs=LegCounts(total=progress["total"], by_status=progress["by_status"]),
        fanout_ms=progress["fanout_ms"],
        master_execution=MasterExecution(**progress["master"]) if progress["master"] else None,
        cancel_requested=progress["cancel_requested"],
    )


async def recent_orders(c: Container, master_id: str, limit: int) -> list[OrderOut]:
    async with c.engine.connect() as conn:
        rows = await list_master_orders(conn, master_id, limit)
        return [_order_out(row, await order_progress(conn, str(row["id"]))) for row in rows]


PROTOCOL = "copytrade.v1"
PAGE = Path(__file__).resolve().parent / "dashboard" / "static" / "index.html"
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'"
)


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def build_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nats_url, database_url, redis_url = settings.require_urls()
        jwt_secret, keys = settings.require_secrets()
        engine = make_engine(database_url, pool_size=settings.api_db_pool, max_overflow=0)
        nc = await bus.connect(nats_url, "copytrade-api")
        js = nc.jetstream()
        await bus.ensure_stream(js)
        redis_client = aioredis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        app.state.container = Container(
            settings=settings,
            engine=engine,
            nc=nc,
            js=js,
            redis=redis_client,
            cipher=CredentialCipher.from_setting(keys),
            issuer=TokenIssuer(jwt_secret, settings.jwt_issuer, settings.jwt_audience),
            dummy_hash=hash_password("not-a-real-password", settings.password_hash_n),
            gateway=Gateway(),
            published=PublishedMarks(engine),
        )
        await app.state.container.gateway.start(nc)
        app.state.container.published.start()
        try:
            yield
        finally:
            await app.state.container.published.close()
            await app.state.container.gateway.stop()
            await bus.close(nc)
            await redis_client.aclose()
            await engine.dispose()

    app = FastAPI(title="copytrade ingest API", version="1", lifespan=lifespan)
    install(app)

    # auth ---------------------------------------------------------------------------------
    @app.post("/v1/auth/register", status_code=201, response_model=RegisterResponse)
    async def register(body: RegisterRequest, c: Deps) -> RegisterResponse:
        user_id = str(uuid.uuid4())
        password_hash = await asyncio.to_thread(
            hash_password, body.password, settings.password_hash_n
        )
        async with c.engine.begin() as conn:
            try:
                await create_user(conn, user_id, body.email, password_hash, body.role)
            except Conflict as exc:
                raise ApiError(409, "email_taken", "that email is already registered") from exc
        return RegisterResponse(user_id=user_id)

    @app.post("/v1/auth/token", response_model=TokenResponse)
    async def token(body: TokenRequest, c: Deps) -> TokenResponse:
        email = body.email.strip().lower()
        throttle_key = "login:fail:" + hashlib.sha256(email.encode()).hexdigest()
        failures = await c.redis.get(throttle_key)
        if failures is not None and int(failures) >= settings.login_attempts_per_5min:
            raise ApiError(
                429,
                "too_many_attempts",
                "too many failed sign-ins; try again later",
                headers={"Retry-After": "300"},
            )
        async with c.engine.connect() as conn:
            user = await get_user_by_email(conn, email)
        stored = user["password_hash"] if user else c.dummy_hash  # same work for unknown emails
        ok = await asyncio.to_thread(verify_password, body.password, stored)
        if user is None or not ok:
            pipe = c.redis.pipeline()
            pipe.incr(throttle_key)
            pipe.expire(throttle_key, 300)
            await pipe.execute()
            raise ApiError(401, "invalid_credentials", "email or password is wrong")
        ttl = settings.access_token_ttl_s
        issued = c.issuer.issue(Principal(str(user["id"]), user["role"]), ttl)
        return TokenResponse(access_token=issued, expires_in=ttl)

    # accounts -----------------------------------------------------------------------------
    @app.post(
        "/v1/accounts",
        status_code=201,
        response_model=AccountOut,
        response_model_exclude={"halted", "created_at"},
    )
    async def create_account(body: AccountCreate, user: Auth, c: Deps) -> AccountOut:
        problem = validate_credentials(body.broker.value, body.credentials)
        if problem is not None:
            code = "broker_not_supported" if "not supported" in problem else "invalid_credentials"
            raise ApiError(422, code, problem)
        account_id = str(uuid.uuid4())
        sealed = c.cipher.encrypt(account_id, body.credentials)
        async with c.engine.begin() as conn:
            await insert_account(
                conn, account_id, user.user_id, body.broker.value, body.label, sealed
            )
        return AccountOut(account_id=account_id, broker=body.broker.value, label=body.label)

    @app.get("/v1/accounts", response_model=list[AccountOut])
    async def list_accounts(user: Auth, c: Deps) -> list[AccountOut]:
        async with c.engine.connect() as conn:
            return [_account_out(row) for row in await accounts_of_user(conn, user.user_id)]

    async def _set_halted(
        account_id: UUID, user: Principal, c: Container, halted: bool
    ) -> AccountOut:
        async with c.engine.begin() as conn:
            row = await set_account_halted(conn, str(account_id), user.user_id, halted)
        if row is None:
            raise ApiError(404, "account_not_found", "no such account")
        return _account_out(row)

    @app.post("/v1/accounts/{account_id}/halt", response_model=AccountOut)
    async def halt(account_id: UUID, user: Auth, c: Deps) -> AccountOut:
        return await _set_halted(account_id, user, c, True)

    @app.post("/v1/accounts/{account_id}/resume", response_model=AccountOut)
    async def resume(account_id: UUID, user: Auth, c: Deps) -> AccountOut:
        return await _set_halted(account_id, user, c, False)

    # subscriptions ------------------------------------------------------------------------
    @app.post("/v1/subscriptions", status_code=201, response_model=SubscriptionOut)
    async def create_subscription(body: SubscriptionCreate, user: Auth, c: Deps) -> SubscriptionOut:
        require(user, "follower")
        async with c.engine.begin() as conn:
            if await get_account(conn, str(body.account_id), user.user_id) is None:
                raise ApiError(404, "account_not_found", "no such account")
            master = await get_user(conn, str(body.master_id))
            if master is None or master["role"] != "master":
                raise ApiError(404, "master_not_found", "no such master")
            values = body.model_dump(mode="json", exclude_none=True)
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
                    },
                )
            except Conflict as exc:
                raise ApiError(
                    409, "subscription_exists", "this account already follows this master"
                ) from exc
        return _subscription_out(row)

    @app.get("/v1/subscriptions", response_model=list[SubscriptionOut])
    async def list_subscriptions(user: Auth, c: Deps) -> list[SubscriptionOut]:
        async with c.engine.connect() as conn:
            rows = await subscriptions_of_follower(conn, user.user_id)
        return [_subscription_out(row) for row in rows]

    @app.patch("/v1/subscriptions/{subscription_id}", response_model=SubscriptionOut)
    async def patch_subscription(
        subscription_id: UUID, body: SubscriptionPatch, user: Auth, c: Deps
    ) -> SubscriptionOut:
        changes = body.model_dump(mode="json", exclude_unset=True)
        if any(value is None for value in changes.values()):
            raise ApiError(422, "validation_error", "fields may be changed but not set to null")
        async with c.engine.begin() as conn:
            row = await update_subscription(conn, str(subscription_id), user.user_id, changes)
        if row is None:
            raise ApiError(404, "subscription_not_found", "no such subscription")
        return _subscription_out(row)

    @app.delete("/v1/subscriptions/{subscription_id}", status_code=204)
    async def delete_subscription(subscription_id: UUID, user: Auth, c: Deps) -> Response:
        async with c.engine.begin() as conn:
            deleted = await remove_subscription(conn, str(subscription_id), user.user_id)
        if not deleted:
            raise ApiError(404, "subscription_not_found", "no such subscription")
        return Response(status_code=204)

    # orders -------------------------------------------------------------------------------
    async def _publish(c: Container, row: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            await bus.publish_order(c.js, order_message_from_row(row), timeout_s=2.0)
        except Exception:
            # The order is durable in PostgreSQL; the sweeper's outbox pass publishes it.
            log.warning("publish of order %s failed; left to the outbox", row["id"], exc_info=True)
            return
        ORDER_PUBLISH.observe(time.perf_counter() - started)
        c.published.add(str(row["id"]))

    @app.post("/v1/orders", status_code=202, response_model=OrderAccepted)
    async def create_order(body: OrderCreate, user: Auth, c: Deps) -> OrderAccepted:
        require(user, "master")
        request_hash = _request_hash(body)
        async with c.engine.begin() as conn:
            row = await insert_master_order(
                conn,
                {
                    "id": str(uuid.uuid4()),
                    "master_id": user.user_id,
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
            replay = row is None
            if row is None:
                if await get_account(conn, str(body.account_id), user.user_id) is None:
                    raise ApiError(404, "account_not_found", "no such account")
                row = await get_master_order_by_client_id(conn, user.user_id, body.client_order_id)
                assert row is not None
        if replay and row["request_hash"] != request_hash:
            ORDERS_INGESTED.labels("conflict").inc()
            raise ApiError(
                409,
                "idempotency_conflict",
                "client_order_id was already used with a different order",
                {"order_id": str(row["id"])},
            )
        if row["published_at"] is None:
            await _publish(c, row)
        ORDERS_INGESTED.labels("replayed" if replay else "accepted").inc()
        return OrderAccepted(
            order_id=str(row["id"]), client_order_id=row["client_order_id"], status="accepted"
        )

    @app.get("/v1/orders/{order_id}", response_model=OrderOut)
    async def get_order(order_id: UUID, user: Auth, c: Deps) -> OrderOut:
        require(user, "master")
        async with c.engine.connect() as conn:
            row = await get_master_order(conn, str(order_id), user.user_id)
            if row is None:
                raise ApiError(404, "order_not_found", "no such order")
            progress = await order_progress(conn, str(order_id))
        return _order_out(row, progress)

    @app.get("/v1/orders", response_model=list[OrderOut])
    async def list_orders(
        user: Auth, c: Deps, limit: Annotated[int, Query(ge=1, le=200)] = 20
    ) -> list[OrderOut]:
        """The master's recent orders, newest first, with their fan-out progress."""
        require(user, "master")
        return await recent_orders(c, user.user_id, limit)

    @app.patch("/v1/orders/{order_id}", status_code=202, response_model=OrderAccepted)
    async def replace_order(
        order_id: UUID, body: OrderReplace, user: Auth, c: Deps
    ) -> OrderAccepted:
        """Change quantity or prices; open legs are replaced at their brokers (same sizing)."""
        require(user, "master")
        async with c.engine.begin() as conn:
            current = await get_master_order(conn, str(order_id), user.user_id)
            if current is None:
                raise ApiError(404, "order_not_found", "no such order")
            kind = current["type"]
            if body.limit_price is not None and kind not in ("limit", "stop_limit"):
                raise ApiError(422, "unexpected_price", f"a {kind} order takes no limit_price")
            if body.stop_price is not None and kind not in ("stop", "stop_limit"):
                raise ApiError(422, "unexpected_price", f"a {kind} order takes no stop_price")
            row = await request_replace(
                conn, str(order_id), user.user_id, body.qty, body.limit_price, body.stop_price
            )
            if row is None:
                raise ApiError(409, "order_canceled", "a canceled order cannot be replaced")
        await c.nc.publish(SWEEP_NOW_SUBJECT, str(order_id).encode())
        return OrderAccepted(
            order_id=str(order_id), client_order_id=row["client_order_id"], status="replacing"
        )

    @app.post("/v1/orders/{order_id}/cancel", status_code=202, response_model=CancelAccepted)
    async def cancel_order(order_id: UUID, user: Auth, c: Deps) -> CancelAccepted:
        """Cancel the master order and every open leg of it, at every broker."""
        require(user, "master")
        async with c.engine.begin() as conn:
            row = await request_cancel(conn, str(order_id), user.user_id)
        if row is None:
            raise ApiError(404, "order_not_found", "no such order")
        await c.nc.publish(SWEEP_NOW_SUBJECT, str(order_id).encode())
        return CancelAccepted(order_id=str(order_id), cancel_requested=True)

    # admin --------------------------------------------------------------------------------
    async def _halt(user: Principal, c: Container, scope: str, halted: bool) -> HaltState:
        require(user, "admin")
        async with c.engine.begin() as conn:
            await set_halt(conn, scope, user.user_id, halted)
        log.warning("admin %s %s %s", user.user_id, "halted" if halted else "resumed", scope)
        return HaltState(scope=scope, halted=halted)

    @app.post("/v1/admin/halt", response_model=HaltState)
    async def global_halt(user: Auth, c: Deps) -> HaltState:
        return await _halt(user, c, GLOBAL_HALT_SCOPE, True)

    @app.post("/v1/admin/resume", response_model=HaltState)
    async def global_resume(user: Auth, c: Deps) -> HaltState:
        return await _halt(user, c, GLOBAL_HALT_SCOPE, False)

    async def _master_scope(master_id: UUID, c: Container) -> str:
        async with c.engine.connect() as conn:
            master = await get_user(conn, str(master_id))
        if master is None or master["role"] != "master":
            raise ApiError(404, "master_not_found", "no such master")
        return master_halt_scope(str(master_id))

    @app.post("/v1/admin/masters/{master_id}/halt", response_model=HaltState)
    async def master_halt(master_id: UUID, user: Auth, c: Deps) -> HaltState:
        require(user, "admin")
        return await _halt(user, c, await _master_scope(master_id, c), True)

    @app.post("/v1/admin/masters/{master_id}/resume", response_model=HaltState)
    async def master_resume(master_id: UUID, user: Auth, c: Deps) -> HaltState:
        require(user, "admin")
        return await _halt(user, c, await _master_scope(master_id, c), False)

    @app.get("/v1/admin/halts", response_model=list[HaltState])
    async def halts(user: Auth, c: Deps) -> list[HaltState]:
        require(user, "admin")
        async with c.engine.connect() as conn:
            scopes = await halt_scopes(conn)
        return [HaltState(scope=scope, halted=True) for scope in sorted(scopes)]

    @app.get("/v1/copies", response_model=list[CopyOut])
    async def copies(
        user: Auth,
        c: Deps,
        order_id: UUID | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[CopyOut]:
        require(user, "follower")
        async with c.engine.connect() as conn:
            rows = await list_copies(conn, user.user_id, str(order_id) if order_id else None, limit)
        return [_copy_out(row) for row in rows]

    # dashboard ----------------------------------------------------------------------------
    allowed_origins = {
        origin.strip().rstrip("/")
        for origin in (settings.allowed_origins or "").split(",")
        if origin.strip()
    } or {
        f"http://{host}:{settings.api_port}"
        for host in (settings.api_host, "127.0.0.1", "localhost")
    }

    @app.post("/v1/ws/token", response_model=WsToken)
    async def ws_token(user: Auth, c: Deps) -> WsToken:
        """A short-lived token for opening one WebSocket; the socket lives as long as the
        access token it was minted from."""
        ttl = settings.ws_token_ttl_s
        token = c.issuer.issue(user, ttl, websocket=True, session_expires_at=user.expires_at)
        return WsToken(token=token, expires_in=ttl)

    @app.websocket("/v1/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        c: Container = websocket.app.state.container
        offered = [
            p.strip()
            for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
            if p.strip()
        ]
        await websocket.accept(subprotocol=PROTOCOL if PROTOCOL in offered else None)

        async def refuse(reason: str) -> None:
            WS_REFUSED.labels(reason).inc()
            await websocket.close(code=1008, reason=reason)

        if (websocket.headers.get("origin") or "").rstrip("/") not in allowed_origins:
            return await refuse("origin not allowed")
        tokens = [p for p in offered if p != PROTOCOL]
        if PROTOCOL not in offered or len(tokens) != 1:
            return await refuse("subprotocols must be copytrade.v1 and a token")
        try:
            user = c.issuer.verify(tokens[0], websocket=True)
        except TokenError as exc:
            return await refuse(str(exc))
        if user.role not in ("follower", "master"):
            return await refuse("role has no dashboard")
        client = c.gateway.register(user.user_id, user.role, websocket)
        tasks: list[asyncio.Task[Any]] = []
        try:
            await websocket.send_text(await _snapshot(c, user))
            session_left = (user.expires_at or 0) - time.time()
            tasks = [
                asyncio.create_task(client.pump()),
                asyncio.create_task(_until_disconnect(websocket)),
                asyncio.create_task(asyncio.sleep(max(0.0, session_left))),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if tasks[2] in done:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await refuse("session expired")
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            c.gateway.unregister(client)

    async def _snapshot(c: Container, user: Principal) -> str:
        if user.role == "follower":
            async with c.engine.connect() as conn:
                rows = await list_copies(conn, user.user_id, None, 50)
            body = {
                "type": "snapshot",
                "copies": [_copy_out(r).model_dump(mode="json") for r in rows],
            }
        else:
            orders = await recent_orders(c, user.user_id, 20)
            body = {"type": "snapshot", "orders": [o.model_dump(mode="json") for o in orders]}
        return json.dumps(body)

    @app.get("/", include_in_schema=False)
    async def dashboard_page() -> Response:
        return Response(
            PAGE.read_bytes(),
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP},
        )

    # ops ----------------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(c: Deps) -> Response:
        checks: dict[str, str] = {}

        async def database() -> None:
            async with c.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        async def nats_server() -> None:
            if not c.nc.is_connected:
                raise ConnectionError("not connected")
            await c.js.stream_info("ORDERS")

        async def redis_server() -> None:
            await c.redis.ping()

        for name, check in (("database", database), ("nats", nats_server), ("redis", redis_server)):
            try:
                await asyncio.wait_for(check(), timeout=2)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"unavailable: {type(exc).__name__}"
        ready = all(value == "ok" for value in checks.values())
        return Response(
            json.dumps({"status": "ready" if ready else "not_ready", "checks": checks}),
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
