"""The simulator's HTTP surface: Alpaca Trading API v2 under /v2, admin under /sim (API.md).

The routes live in brokers.sim.routes by area (orders, account, market data, admin); what they
share (error shape, authentication and fault injection) in brokers.sim.routes.common.
"""

from __future__ import annotations

import os
import random

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from brokers.sim.engine import Engine
from brokers.sim.routes import account, admin, market, orders
from brokers.sim.routes.common import SimState, error

# How long a "timeout" fault holds a request before dropping it: far past any client timeout.
# Read at request time, so patching it here takes effect.
TIMEOUT_HOLD_S = float(os.environ.get("COPYTRADE_SIM_TIMEOUT_HOLD_S", "30"))


def _timeout_hold_s() -> float:
    return TIMEOUT_HOLD_S


async def _not_found(request: Request, exc: Exception) -> Response:
    """Unserved routes answer like Alpaca: JSON `{"code", "message"}`, never text/plain."""
    return error(404, 40410000, "endpoint not found")


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    headers = getattr(exc, "headers", None)
    return error(405, 40510000, "method not allowed", dict(headers) if headers else None)


class Simulator:
    """The simulator's ASGI app. `POST /v2/orders`, the request every copy of a fan-out is, goes
    straight to its handler (the same one the route calls: authentication, faults, the engine,
    the same answers); everything else through Starlette's middleware and routing. Those layers
    cost the simulator more CPU per order than the order itself, and on the benchmark's two
    cores the simulator's CPU is taken from the service it measures (README, issue 13, eighth
    pass)."""

    def __init__(self, routed: Starlette, orders: orders.OrderRoutes) -> None:
        self.routed = routed
        self.state: State = routed.state
        self._orders = orders

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/v2/orders":
            await self.routed(scope, receive, send)
            return
        try:
            response = await self._orders.orders(Request(scope, receive))
        except Exception:
            # As Starlette's ServerErrorMiddleware does on the routed path: a plain 500, then
            # the exception goes on to the server (and to a test's ASGI transport).
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        await response(scope, receive, send)


def build_app(seed: int | None = None, admin_key: str | None = None) -> Simulator:
    engine = Engine()
    state = SimState(engine=engine, rng=random.Random(seed), timeout_hold_s=_timeout_hold_s)
    order_routes = orders.OrderRoutes(state)
    routes = [
        *orders.routes(order_routes),
        *account.routes(state),
        *market.routes(state),
        *admin.routes(engine, admin_key),
    ]
    routed = Starlette(
        routes=routes, exception_handlers={404: _not_found, 405: _method_not_allowed}
    )
    routed.state.engine = engine
    return Simulator(routed, order_routes)
