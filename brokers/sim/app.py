"""The simulator's HTTP surface: Alpaca Trading API v2 under /v2, admin under /sim (API.md)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brokers.sim.engine import (
    ASSET_NAMESPACE,
    Engine,
    Faults,
    SimAccount,
    SimAsset,
    SimError,
    dec,
    now,
    rfc3339,
)

Handler = Callable[[Request, SimAccount], Awaitable[Response]]

# How long a "timeout" fault holds a request before dropping it: far past any client timeout.
TIMEOUT_HOLD_S = float(os.environ.get("COPYTRADE_SIM_TIMEOUT_HOLD_S", "30"))


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise SimError(400, 40010000, "request body is not valid JSON") from exc


def _timestamp(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp or a date (Alpaca takes both); a naive one is UTC."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _not_found(request: Request, exc: Exception) -> Response:
    """Unserved routes answer like Alpaca: JSON `{"code", "message"}`, never text/plain."""
    return _error(404, 40410000, "endpoint not found")


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    headers = getattr(exc, "headers", None)
    return _error(405, 40510000, "method not allowed", dict(headers) if headers else None)


def build_app(seed: int | None = None) -> Starlette:
    engine = Engine()
    rng = random.Random(seed)
    host_window: deque[float] = deque()

    def account_of(request: Request) -> SimAccount:
        return engine.authenticate(
            request.headers.get("apca-api-key-id"), request.headers.get("apca-api-secret-key")
        )

    async def apply_faults(account: SimAccount) -> Response | None:
        """Latency, rate limit and injected failures, in the order a real broker shows them."""
        faults = engine.faults_for(account)
        host_limit = engine.faults.ip_rate_limit_per_s
        if host_limit:
            moment = time.monotonic()
            while host_window and moment - host_window[0] >= 1:
                host_window.popleft()
            if len(host_window) >= host_limit:
                engine.rate_limited += 1
                return _error(429, 42910000, "too many requests from this IP", {"Retry-After": "1"})
            host_window.append(moment)
        if faults.rate_limit_per_min:
            window = account.request_times
            moment = time.monotonic()
            while window and moment - window[0] >= 60:
                window.popleft()
            if len(window) >= faults.rate_limit_per_min:
                retry_after = max(1, int(60 - (moment - window[0])) + 1)
                engine.rate_limited += 1
                return _error(
                    429, 42910000, "rate limit exceeded", {"Retry-After": str(retry_after)}
                )
            window.append(moment)
        delay = faults.latency_ms + (rng.uniform(0, faults.jitter_ms) if faults.jitter_ms else 0)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if faults.error_rate and rng.random() < faults.error_rate:
            return _error(500, 50010000, "internal server error (injected)")
        if faults.timeout_rate and rng.random() < faults.timeout_rate:
            await asyncio.sleep(TIMEOUT_HOLD_S)
            return _error(504, 50410000, "gateway timeout (injected)")
        return None

    async def guarded(request: Request, handler: Handler) -> Response:
        try:
            account = account_of(request)
            faulted = await apply_faults(account)
            if faulted is not None:
                return faulted
            return await handler(request, account)
        except SimError as exc:
            return _error(exc.status, exc.code, exc.message)

    # /v2 ----------------------------------------------------------------------------------
    async def post_order(request: Request, account: SimAccount, arrived: float) -> Response:
        body = await _json_body(request)
        account.orders_received += 1
        engine.orders_received += 1
        order = engine.place(account, body)
        order.received_at = arrived
        faults = engine.faults_for(account)
        if faults.accept_then_timeout_rate and rng.random() < faults.accept_then_timeout_rate:
            await asyncio.sleep(TIMEOUT_HOLD_S)
        return JSONResponse(order.wire())

    async def list_orders(request: Request, account: SimAccount) -> Response:
        query = request.query_params
        status = query.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise SimError(422, 40010001, "invalid status")
        direction = query.get("direction", "desc")
        if direction not in ("asc", "desc"):
            raise SimError(422, 40010001, "invalid direction")
        side = query.get("side") or None
        if side is not None and side not in ("buy", "sell"):
            raise SimError(422, 40010001, "invalid side")
        symbols = (
            frozenset(s.strip() for s in query["symbols"].split(",") if s.strip())
            if query.get("symbols")
            else None
        )
        try:
            limit = int(query.get("limit", "50"))
            after = _timestamp(query.get("after"))
            until = _timestamp(query.get("until"))
        except ValueError as exc:
            raise SimError(422, 40010001, "invalid limit, after or until") from exc
        if limit < 1:
            raise SimError(422, 40010001, "limit must be at least 1")
        orders = engine.list_orders(
            account,
            status,
            min(limit, 500),
            after,
            direction,
            until=until,
            symbols=symbols,
            side=side,
        )
        return JSONResponse([o.wire() for o in orders])

    async def orders(request: Request) -> Response:
        if request.method == "POST":
            arrived = time.time()
            return await guarded(request, lambda r, a: post_order(r, a, arrived))
        return await guarded(request, list_orders)

    async def by_client_order_id(request: Request) -> Response:
        async def handler(request: Request, account: SimAccount) -> Response:
            order = account.by_client_order_id.get(request.query_params.get("client_order_id", ""))
            if order is None:
                raise SimError(404, 40410000, "order not found")
            return JSONResponse(order.wire())

        return await guarded(request, handler)

    async def order_by_id(request: Request) -> Response:
        order_id = request.path_params["order_id"]

        async def handler(request: Request, account: SimAccount) -> Response:
            if request.method == "DELETE":
                engine.cancel(account, order_id)
                return Response(status_code=204)
            if request.method == "PATCH":
                body = await _json_body(request)
                return JSONResponse(engine.replace(account, order_id, body).wire())
            order = account.orders.get(order_id)
            if order is None:
                raise SimError(404, 40410000, "order not found")
            return JSONResponse(order.wire())

        return await guarded(request, handler)

    async def positions(request: Request) -> Response:
        async def handler(request: Request, account: SimAccount) -> Response:
            account.position_reads += 1
            out = []
            for symbol, p in sorted(account.positions.items()):
                price = engine.price(symbol)
                market_value = p.qty * price
                cost_basis = p.qty * p.avg_entry_price
                unrealized = market_value - cost_basis
                out.append(
                    {
                        "asset_id": str(uuid.uuid5(ASSET_NAMESPACE, symbol)),
                        "symbol": symbol,
                        "exchange": "NASDAQ",
                        "asset_class": "us_equity",
                        "avg_entry_price": dec(p.avg_entry_price),
                        "qty": dec(abs(p.qty)),
                        "qty_available": dec(abs(p.qty)),
                        "side": "long" if p.qty > 0 else "short",
                        "market_value": dec(market_value),
                        "cost_basis": dec(cost_basis),
                        "unrealized_pl": dec(unrealized),
                        "unrealized_plpc": dec(
                            unrealized / cost_basis if cost_basis else Decimal(0)
                        ),
                        "unrealized_intraday_pl": dec(unrealized),
                        "unrealized_intraday_plpc": dec(
                            unrealized / cost_basis if cost_basis else Decimal(0)
                        ),
                        "current_price": dec(price),
                        "lastday_price": dec(price),
                        "change_today": "0",
                        "asset_marginable": True,
                    }
                )
            return JSONResponse(out)

        return await guarded(request, handler)

    async def account_info(request: Request) -> Response:
        async def handler(request: Request, account: SimAccount) -> Response:
            equity = engine.equity(account)
            long_value = sum(
                (p.qty * engine.price(s) for s, p in account.positions.items() if p.qty > 0),
                Decimal(0),
            )
            short_value = sum(
                (p.qty * engine.price(s) for s, p in account.positions.items() if p.qty < 0),
                Decimal(0),
            )
            return JSONResponse(
                {
                    "id": account.account_id,
                    "account_number": "SIM" + account.account_id.replace("-", "")[:9].upper(),
                    "status": "ACTIVE",
                    "currency": "USD",
                    "cash": dec(account.cash),
                    "portfolio_value": dec(equity),
                    "equity": dec(equity),
                    "last_equity": dec(
                        account.last_equity if account.last_equity is not None else equity
                    ),
                    "long_market_value": dec(long_value),
                    "short_market_value": dec(short_value),
                    "buying_power": dec(max(account.cash, Decimal(0))),
                    "regt_buying_power": dec(max(account.cash, Decimal(0))),
                    "daytrading_buying_power": "0",
                    "non_marginable_buying_power": dec(max(account.cash, Decimal(0))),
                    "multiplier": "1",
                    "initial_margin": "0",
                    "maintenance_margin": "0",
                    "last_maintenance_margin": "0",
                    "sma": "0",
                    "daytrade_count": 0,
                    "pattern_day_trader": False,
                    "trade_suspended_by_user": False,
                    "trading_blocked": False,
                    "transfers_blocked": False,
                    "account_blocked": False,
                    "shorting_enabled": True,
                    "accrued_fees": "0",
                    "pending_transfer_in": "0",
                    "pending_transfer_out": "0",
                    "created_at": rfc3339(account.created_at),
                    "balance_asof": account.created_at.date().isoformat(),
                }
            )

        return await guarded(request, handler)

    async def asset(request: Request) -> Response:
        async def handler(request: Request, account: SimAccount) -> Response:
            return JSONResponse(engine.asset(request.path_params["symbol"]).wire())

        return await guarded(request, handler)

    def trade(symbol: str) -> dict[str, Any]:
        return {
            "t": rfc3339(now()),
            "x": "V",
            "p": float(engine.price(symbol)),
            "s": 100,
            "c": ["@"],
            "i": 1,
            "z": "C",
        }

    async def latest_trade(request: Request) -> Response:
        """Alpaca Market Data v2 `GET /v2/stocks/{symbol}/trades/latest` (same host here)."""

        async def handler(request: Request, account: SimAccount) -> Response:
            symbol = request.path_params["symbol"]
            return JSONResponse({"symbol": symbol, "trade": trade(symbol)})

        return await guarded(request, handler)

    async def latest_trades(request: Request) -> Response:
        """Market Data v2 `GET /v2/stocks/trades/latest?symbols=A,B` (what alpaca-py calls)."""

        async def handler(request: Request, account: SimAccount) -> Response:
            symbols = [s for s in request.query_params.get("symbols", "").split(",") if s]
            if not symbols:
                raise SimError(400, 40010001, "symbols is required")
            return JSONResponse({"trades": {symbol: trade(symbol) for symbol in symbols}})

        return await guarded(request, handler)

    # /sim ---------------------------------------------------------------------------------
    async def sim_accounts(request: Request) -> Response:
        try:
            body = await _json_body(request)
            cash = Decimal(str(body.get("cash", body.get("equity", "100000"))))
            if not cash.is_finite() or cash < 0:
                raise SimError(422, 40010001, "cash must be >= 0")
            account = engine.create_account(
                cash,
                account_id=body.get("account_id"),
                key_id=body.get("key_id"),
                secret_key=body.get("secret_key"),
            )
        except SimError as exc:
            return _error(exc.status, exc.code, exc.message)
        except InvalidOperation:
            return _error(422, 40010001, "cash must be a decimal")
        return JSONResponse(
            {
                "account_id": account.account_id,
                "key_id": account.key_id,
                "secret_key": account.secret_key,
            },
            status_code=201,
        )

    async def sim_faults(request: Request) -> Response:
        account_id = request.query_params.get("account_id")
        account = engine.accounts.get(account_id) if account_id else None
        if account_id and account is None:
            return _error(404, 40410000, "account not found")
        if request.method == "GET":
            return JSONResponse(engine.faults_for(account).__dict__)
        try:
            body = await _json_body(request)
        except SimError as exc:
            return _error(exc.status, exc.code, exc.message)
        allowed = set(Faults().__dict__)
        if not isinstance(body, dict) or set(body) - allowed:
            return _error(422, 40010001, f"unknown fault fields; allowed: {sorted(allowed)}")
        base = engine.faults_for(account)
        updated = base.updated(body)
        if account is None:
            engine.faults = updated
        else:
            account.faults = updated
        return JSONResponse(updated.__dict__)

    async def sim_prices(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({s: dec(p) for s, p in engine.prices.items()})
        try:
            body = await _json_body(request)
            prices = {str(s): Decimal(str(p)) for s, p in body.items()}
        except (SimError, InvalidOperation, AttributeError):
            return _error(422, 40010001, "body must map symbols to decimal prices")
        if any(not p.is_finite() or p <= 0 for p in prices.values()):
            return _error(422, 40010001, "prices must be > 0")
        filled = engine.set_prices(prices)
        return JSONResponse({"prices": {s: dec(p) for s, p in prices.items()}, "filled": filled})

    async def sim_assets(request: Request) -> Response:
        try:
            body = await _json_body(request)
            assets = {
                str(symbol): SimAsset(
                    symbol=str(symbol),
                    fractionable=bool(spec.get("fractionable", False)),
                    min_order_size=None
                    if spec.get("min_order_size") is None
                    else Decimal(str(spec["min_order_size"])),
                    min_trade_increment=None
                    if spec.get("min_trade_increment") is None
                    else Decimal(str(spec["min_trade_increment"])),
                )
                for symbol, spec in body.items()
            }
        except (SimError, InvalidOperation, AttributeError):
            return _error(422, 40010001, "body must map symbols to asset settings")
        engine.assets.update(assets)
        return JSONResponse({s: a.wire() for s, a in assets.items()})

    async def sim_day(request: Request) -> Response:
        """Start a new simulated trading day: day P&L counts from the current equity."""
        for account in engine.accounts.values():
            account.last_equity = engine.equity(account)
        return JSONResponse({"accounts": len(engine.accounts)})

    async def sim_stats(request: Request) -> Response:
        return JSONResponse(engine.stats())

    async def sim_orders(request: Request) -> Response:
        account_id = request.query_params.get("account_id")
        accounts = (
            [engine.accounts[account_id]]
            if account_id in engine.accounts
            else ([] if account_id else list(engine.accounts.values()))
        )
        return JSONResponse(
            [{"account_id": a.account_id, **o.wire()} for a in accounts for o in a.orders.values()]
        )

    async def sim_timings(request: Request) -> Response:
        """When each order of a symbol arrived (wall clock), by account: for benchmarks.
        `since` (epoch seconds) keeps only orders that arrived at or after it."""
        symbol = request.query_params.get("symbol", "")
        try:
            since = float(request.query_params.get("since", "0"))
        except ValueError:
            return JSONResponse({"code": 42210000, "message": "since must be a number"}, 422)
        return JSONResponse(
            [
                {"account_id": a.account_id, "received_at": o.received_at}
                for a in engine.accounts.values()
                for o in a.orders.values()
                if o.symbol == symbol and o.received_at >= since
            ]
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/v2/orders", orders, methods=["GET", "POST"]),
        Route("/v2/orders:by_client_order_id", by_client_order_id, methods=["GET"]),
        Route("/v2/orders/{order_id}", order_by_id, methods=["GET", "DELETE", "PATCH"]),
        Route("/v2/positions", positions, methods=["GET"]),
        Route("/v2/account", account_info, methods=["GET"]),
        Route("/v2/assets/{symbol}", asset, methods=["GET"]),
        Route("/v2/stocks/{symbol}/trades/latest", latest_trade, methods=["GET"]),
        Route("/v2/stocks/trades/latest", latest_trades, methods=["GET"]),
        Route("/sim/accounts", sim_accounts, methods=["POST"]),
        Route("/sim/assets", sim_assets, methods=["PUT"]),
        Route("/sim/day", sim_day, methods=["POST"]),
        Route("/sim/faults", sim_faults, methods=["GET", "PUT"]),
        Route("/sim/prices", sim_prices, methods=["GET", "PUT"]),
        Route("/sim/stats", sim_stats, methods=["GET"]),
        Route("/sim/orders", sim_orders, methods=["GET"]),
        Route("/sim/timings", sim_timings, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes, exception_handlers={404: _not_found, 405: _method_not_allowed}
    )
    app.state.engine = engine
    return app
