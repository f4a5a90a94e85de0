"""/v2/orders: place, list, look up by id or client order id, cancel and replace."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brokers.sim.engine import SimAccount, SimError
from brokers.sim.routes.common import SimState, error, json_body, timestamp


def _list_filters(request: Request) -> tuple[str, str, str | None, frozenset[str] | None]:
    """status, direction, side and symbols of GET /v2/orders, validated."""
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
    return status, direction, side, symbols


class OrderRoutes:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.engine = state.engine

    async def post_order(self, request: Request, account: SimAccount, arrived: float) -> Response:
        engine = self.engine
        if engine.faults_for(account).throttle_orders:
            engine.rate_limited += 1
            return error(429, 42910000, "too many orders", {"Retry-After": "60"})
        body = await json_body(request)
        account.orders_received += 1
        engine.orders_received += 1
        order = engine.place(account, body)
        order.received_at = arrived
        faults = engine.faults_for(account)
        rate = faults.accept_then_timeout_rate
        if rate and self.state.rng.random() < rate:
            await asyncio.sleep(self.state.timeout_hold_s())
        return JSONResponse(order.wire())

    async def list_orders(self, request: Request, account: SimAccount) -> Response:
        status, direction, side, symbols = _list_filters(request)
        query = request.query_params
        try:
            limit = int(query.get("limit", "50"))
            after = timestamp(query.get("after"))
            until = timestamp(query.get("until"))
        except ValueError as exc:
            raise SimError(422, 40010001, "invalid limit, after or until") from exc
        if limit < 1:
            raise SimError(422, 40010001, "limit must be at least 1")
        orders = self.engine.list_orders(
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

    async def orders(self, request: Request) -> Response:
        if request.method == "POST":
            arrived = time.time()
            return await self.state.guarded(request, lambda r, a: self.post_order(r, a, arrived))
        return await self.state.guarded(request, self.list_orders)

    async def find_by_client_order_id(self, request: Request, account: SimAccount) -> Response:
        order = account.by_client_order_id.get(request.query_params.get("client_order_id", ""))
        if order is None:
            raise SimError(404, 40410000, "order not found")
        return JSONResponse(order.wire())

    async def by_client_order_id(self, request: Request) -> Response:
        return await self.state.guarded(request, self.find_by_client_order_id)

    async def one_order(self, request: Request, account: SimAccount) -> Response:
        order_id = request.path_params["order_id"]
        if request.method == "DELETE":
            self.engine.cancel(account, order_id)
            return Response(status_code=204)
        if request.method == "PATCH":
            body = await json_body(request)
            return JSONResponse(self.engine.replace(account, order_id, body).wire())
        order = account.orders.get(order_id)
        if order is None:
            raise SimError(404, 40410000, "order not found")
        return JSONResponse(order.wire())

    async def order_by_id(self, request: Request) -> Response:
        return await self.state.guarded(request, self.one_order)


def routes(handlers: OrderRoutes) -> list[Route]:
    return [
        Route("/v2/orders", handlers.orders, methods=["GET", "POST"]),
        Route("/v2/orders:by_client_order_id", handlers.by_client_order_id, methods=["GET"]),
        Route("/v2/orders/{order_id}", handlers.order_by_id, methods=["GET", "DELETE", "PATCH"]),
    ]
