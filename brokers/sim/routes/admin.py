"""The simulator's own admin surface under /sim (accounts, faults, prices, assets, the trading
day, counters, order timings) and /healthz.

Open when the simulator runs without an admin key (development, tests); with one
(COPYTRADE_SIM_ADMIN_KEY, required when production asks for the simulator) every /sim route
needs it in `X-Sim-Admin-Key`. An account's secret is answered only when it is created."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brokers.sim.engine import Engine, Faults, SimAsset, SimError, dec
from brokers.sim.routes.common import error, json_body


def _asset_settings(symbol: Any, spec: Any) -> SimAsset:
    return SimAsset(
        symbol=str(symbol),
        fractionable=bool(spec.get("fractionable", False)),
        tradable=bool(spec.get("tradable", True)),
        min_order_size=None
        if spec.get("min_order_size") is None
        else Decimal(str(spec["min_order_size"])),
        min_trade_increment=None
        if spec.get("min_trade_increment") is None
        else Decimal(str(spec["min_trade_increment"])),
    )


class AdminRoutes:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def sim_accounts(self, request: Request) -> Response:
        try:
            body = await json_body(request)
            cash = Decimal(str(body.get("cash", body.get("equity", "100000"))))
            if not cash.is_finite() or cash < 0:
                raise SimError(422, 40010001, "cash must be >= 0")
            key_id, secret_key = body.get("key_id"), body.get("secret_key")
            existed = key_id is not None and key_id in self.engine.by_key
            if existed and secret_key is None:
                raise SimError(409, 40910000, "key_id already exists")
            account = self.engine.create_account(
                cash, account_id=body.get("account_id"), key_id=key_id, secret_key=secret_key
            )
        except SimError as exc:
            return error(exc.status, exc.code, exc.message)
        except InvalidOperation:
            return error(422, 40010001, "cash must be a decimal")
        answer = {"account_id": account.account_id, "key_id": account.key_id}
        if existed:  # the caller proved it knows the secret; it is never answered again
            return JSONResponse(answer, status_code=200)
        return JSONResponse({**answer, "secret_key": account.secret_key}, status_code=201)

    async def sim_faults(self, request: Request) -> Response:
        engine = self.engine
        account_id = request.query_params.get("account_id")
        account = engine.accounts.get(account_id) if account_id else None
        if account_id and account is None:
            return error(404, 40410000, "account not found")
        if request.method == "GET":
            return JSONResponse(engine.faults_for(account).__dict__)
        try:
            body = await json_body(request)
        except SimError as exc:
            return error(exc.status, exc.code, exc.message)
        allowed = set(Faults().__dict__)
        if not isinstance(body, dict) or set(body) - allowed:
            return error(422, 40010001, f"unknown fault fields; allowed: {sorted(allowed)}")
        base = engine.faults_for(account)
        updated = base.updated(body)
        if account is None:
            engine.faults = updated
        else:
            account.faults = updated
        return JSONResponse(updated.__dict__)

    async def sim_prices(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({s: dec(p) for s, p in self.engine.prices.items()})
        try:
            body = await json_body(request)
            prices = {str(s): Decimal(str(p)) for s, p in body.items()}
        except (SimError, InvalidOperation, AttributeError):
            return error(422, 40010001, "body must map symbols to decimal prices")
        if any(not p.is_finite() or p <= 0 for p in prices.values()):
            return error(422, 40010001, "prices must be > 0")
        filled = self.engine.set_prices(prices)
        return JSONResponse({"prices": {s: dec(p) for s, p in prices.items()}, "filled": filled})

    async def sim_assets(self, request: Request) -> Response:
        try:
            body = await json_body(request)
            assets = {str(symbol): _asset_settings(symbol, spec) for symbol, spec in body.items()}
        except (SimError, InvalidOperation, AttributeError):
            return error(422, 40010001, "body must map symbols to asset settings")
        self.engine.assets.update(assets)
        return JSONResponse({s: a.wire() for s, a in assets.items()})

    async def sim_day(self, request: Request) -> Response:
        """Start a new simulated trading day (for every account, or the one `account_id`
        names): resting day orders expire at the close and day P&L counts from the current
        equity."""
        account_id = request.query_params.get("account_id")
        account = self.engine.accounts.get(account_id) if account_id else None
        if account_id and account is None:
            return error(404, 40410000, "account not found")
        expired = self.engine.end_day(account)
        accounts = 1 if account is not None else len(self.engine.accounts)
        return JSONResponse({"accounts": accounts, "expired": expired})

    async def sim_stats(self, request: Request) -> Response:
        return JSONResponse(self.engine.stats())

    async def sim_orders(self, request: Request) -> Response:
        engine = self.engine
        account_id = request.query_params.get("account_id")
        accounts = (
            [engine.accounts[account_id]]
            if account_id in engine.accounts
            else ([] if account_id else list(engine.accounts.values()))
        )
        return JSONResponse(
            [{"account_id": a.account_id, **o.wire()} for a in accounts for o in a.orders.values()]
        )

    async def sim_timings(self, request: Request) -> Response:
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
                for a in self.engine.accounts.values()
                for o in a.orders.values()
                if o.symbol == symbol and o.received_at >= since
            ]
        )

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


Endpoint = Callable[[Request], Awaitable[Response]]


def _gated(admin_key: str | None, endpoint: Endpoint) -> Endpoint:
    """The endpoint behind the admin key (when the simulator has one)."""
    if not admin_key:
        return endpoint
    expected = admin_key.encode()

    async def gated(request: Request) -> Response:
        offered = request.headers.get("x-sim-admin-key", "").encode()
        if not secrets.compare_digest(offered, expected):
            return error(401, 40110000, "the simulator's admin key is required")
        return await endpoint(request)

    return gated


def routes(engine: Engine, admin_key: str | None = None) -> list[Route]:
    handlers = AdminRoutes(engine)
    admin_routes = [
        Route("/sim/accounts", handlers.sim_accounts, methods=["POST"]),
        Route("/sim/assets", handlers.sim_assets, methods=["PUT"]),
        Route("/sim/day", handlers.sim_day, methods=["POST"]),
        Route("/sim/faults", handlers.sim_faults, methods=["GET", "PUT"]),
        Route("/sim/prices", handlers.sim_prices, methods=["GET", "PUT"]),
        Route("/sim/stats", handlers.sim_stats, methods=["GET"]),
        Route("/sim/orders", handlers.sim_orders, methods=["GET"]),
        Route("/sim/timings", handlers.sim_timings, methods=["GET"]),
    ]
    return [
        *(
            Route(r.path, _gated(admin_key, r.endpoint), methods=sorted(r.methods or ()))
            for r in admin_routes
        ),
        Route("/healthz", handlers.healthz, methods=["GET"]),
    ]
