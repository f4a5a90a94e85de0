"""The worker's pure-Python work per leg, without I/O: plan 500 followers, the recording
copies (planner inputs, the submitting status), the order request, Alpaca's body, parsing its
answer, the leg outcome. Prints the minimum over 15 repeats of CPU µs per leg, which a shared
machine's load disturbs far less than a whole `make bench` (compare two checkouts with it).

    python scripts/perleg.py
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code

from brokers.alpaca import translate
from replication.model import FollowerState, Instrument, MasterContext, evolve
from replication.plan import plan
from replication.state import LegStatus, transition
from schemas.copy_settings import MultiplierSizing
from services.app.sending import outcome_from_order, request_from_leg
from tests.unit.test_sizing_and_plan import NOW, order, target

N = 500
ANSWER = json.dumps(
    {
        "id": str(uuid.uuid4()),
        "client_order_id": "abc",
        "created_at": "2026-11-30T02:00:00.123456789Z",
        "symbol": "AAPL",
        "qty": "1",
        "filled_qty": "0",
        "filled_avg_price": None,
        "order_type": "market",
        "type": "market",
        "side": "buy",
        "time_in_force": "day",
        "limit_price": None,
        "stop_price": None,
        "status": "accepted",
        "replaces": None,
    }
).encode()


def main() -> None:
    master = order()
    sizing = MultiplierSizing(mode="multiplier", factor=Decimal(1))
    targets = [target(sizing, account=str(uuid.uuid4())) for _ in range(N)]
    context = MasterContext(reference_price=Decimal(100), price_source="last_price")

    def one() -> int:
        ready = [
            evolve(t, instrument=Instrument("AAPL"), state=evolve(FollowerState(), orders_today=1))
            for t in targets
        ]
        legs = [
            evolve(leg, status=transition(leg.status, LegStatus.SUBMITTING))
            if leg.status is LegStatus.PLANNED
            else leg
            for leg in plan(master, ready, NOW, context)
        ]
        sent = 0
        for leg in legs:
            if leg.qty is not None:
                translate.order_request_body(request_from_leg(leg))
                outcome_from_order(leg.leg_id, translate.parse_order(json.loads(ANSWER)))
                sent += 1
        return sent

    best = float("inf")
    for _ in range(15):
        started = time.process_time()
        sent = one()
        best = min(best, (time.process_time() - started) / N * 1e6)
    print(f"{best:.1f} µs/leg of pure-Python per-leg work ({sent} of {N} legs sent)")


if __name__ == "__main__":
    main()
