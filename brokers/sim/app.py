"""The simulator's HTTP surface: Alpaca Trading API v2 under /v2, admin under /sim (API.md).

The routes live in brokers.sim.routes by area (orders, account, market data, admin); what they
share (error shape, authentication and fault injection) in brokers.sim.routes.common.
"""

from __future__ import annotations

import os
import random

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

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


def build_app(seed: int | None = None, admin_key: str | None = None) -> Starlette:
    engine = Engine()
    state = SimState(engine=engine, rng=random.Random(seed), timeout_hold_s=_timeout_hold_s)
    routes = [
        *orders.routes(state),
        *account.routes(state),
        *market.routes(state),
        *admin.routes(engine, admin_key),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found, 405: _method_not_allowed})
    app.state.engine = engine
    return app
