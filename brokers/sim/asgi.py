"""ASGI entry of the simulator (one process holds all simulated accounts)."""

import os

from brokers.sim.app import build_app

_seed = os.environ.get("COPYTRADE_SIM_SEED")
app = build_app(
    seed=int(_seed) if _seed else None,
    admin_key=os.environ.get("COPYTRADE_SIM_ADMIN_KEY") or None,
)
