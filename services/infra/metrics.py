"""Prometheus metrics of every copytrade process.

copytrade_orders_ingested_total{outcome}          POST /v1/orders: accepted, replayed, conflict
copytrade_order_publish_seconds                   JetStream publish (with ack) latency
copytrade_legs_total{status}                      legs settled by status
copytrade_fanout_seconds                          master order created → all its legs settled
copytrade_first_leg_seconds                       master order created → first leg answered
copytrade_broker_request_seconds{broker,operation,outcome}
copytrade_sweeper_legs_total{outcome}             in-doubt legs resolved by the sweeper
copytrade_outbox_republished_total                master orders republished by the sweeper
copytrade_dead_letters_retried_total              dead-lettered master orders republished
copytrade_master_positions_total{source}          where planning got the master's position
copytrade_consumer_pending_messages{stream,consumer}      not yet delivered (consumer lag)
copytrade_consumer_ack_pending_messages{stream,consumer}  delivered, not yet acknowledged
copytrade_dead_lettered_total{stream}             messages past max_deliver (JetStream advisory)
copytrade_sweeper_backlog_legs                    legs in doubt past their lease
copytrade_sweeper_backlog_oldest_seconds          how long past its lease the oldest one is
copytrade_broker_circuit_open{host}               1 while a broker host's circuit is open
copytrade_rate_budget_wait_seconds{scope}         waits for a rate budget (account, host)
copytrade_rate_budget_refused_total{scope}        reservations refused (wait too long)
(copytrade_ws_clients{role} and copytrade_ws_events_sent_total{type}: services/api/dashboard.)
copytrade_orders_dead_lettered_total{stream}      master orders whose message ran out of
                                                  delivery attempts (JetStream max_deliver)
copytrade_legs_retried_total                      failed legs put back in doubt by a retry
copytrade_gc_holds_total{end}                     young GCs held off an order's first copies,
                                                  by how the hold ended: released, expired
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

ORDERS_INGESTED = Counter(
    "copytrade_orders_ingested_total", "Master orders received by the ingest API", ["outcome"]
)
ORDER_PUBLISH = Histogram(
    "copytrade_order_publish_seconds", "JetStream publish latency", buckets=_LATENCY_BUCKETS
)
LEGS = Counter("copytrade_legs_total", "Legs settled, by final status", ["status"])
FANOUT = Histogram(
    "copytrade_fanout_seconds", "Master order created to all legs settled", buckets=_LATENCY_BUCKETS
)
GC_HELD = Counter(
    "copytrade_gc_holds_total",
    "Cyclic GC held off while an order's first copies were sent, by how the hold ended",
    ["end"],
)
FIRST_LEG = Histogram(
    "copytrade_first_leg_seconds",
    "Master order created to first leg answered",
    buckets=_LATENCY_BUCKETS,
)
BROKER_REQUESTS = Histogram(
    "copytrade_broker_request_seconds",
    "Broker requests",
    ["broker", "operation", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
SWEEPER_LEGS = Counter("copytrade_sweeper_legs_total", "In-doubt legs resolved", ["outcome"])
OUTBOX_REPUBLISHED = Counter(
    "copytrade_outbox_republished_total", "Master orders republished from the outbox"
)
DEAD_LETTERS_RETRIED = Counter(
    "copytrade_dead_letters_retried_total", "Dead-lettered master orders republished"
)
MASTER_POSITIONS = Counter(
    "copytrade_master_positions_total",
    "Where planning got the master's position from (hit: the cache, broker: a live read)",
    ["source"],
)
CONSUMER_PENDING = Gauge(
    "copytrade_consumer_pending_messages",
    "Messages of the stream not yet delivered to the durable consumer (lag)",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "copytrade_consumer_ack_pending_messages",
    "Messages delivered to the durable consumer and not yet acknowledged",
    ["stream", "consumer"],
)
MAX_DELIVERIES_SEEN = Counter(
    "copytrade_dead_lettered_total",
    "Messages that reached max_deliver without an ack (JetStream advisory)",
    ["stream"],
)
SWEEPER_BACKLOG = Gauge("copytrade_sweeper_backlog_legs", "Legs in doubt past their lease")
SWEEPER_BACKLOG_OLDEST = Gauge(
    "copytrade_sweeper_backlog_oldest_seconds", "Age past its lease of the oldest leg in doubt"
)
CIRCUIT_OPEN = Gauge(
    "copytrade_broker_circuit_open", "1 while the broker host's circuit is open", ["host"]
)
BUDGET_WAIT = Histogram(
    "copytrade_rate_budget_wait_seconds",
    "Time waited for a rate budget before a broker request",
    ["scope"],
    buckets=_LATENCY_BUCKETS,
)
BUDGET_REFUSED = Counter(
    "copytrade_rate_budget_refused_total",
    "Rate budget reservations refused (the wait would be too long)",
    ["scope"],
)
DEAD_LETTERED = Counter(
    "copytrade_orders_dead_lettered_total",
    "Master orders whose message (ORDERS or ORDER_SHARDS) exceeded its delivery attempts",
    ["stream"],
)
LEGS_RETRIED = Counter(
    "copytrade_legs_retried_total", "Failed legs put back in doubt by POST /v1/copies/{id}/retry"
)


@cache
def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, looked up once per label set: labels() costs ~6 µs a call,
    which the per-leg paths (a broker request's timing, a settled leg's count) pay per leg."""
    return metric.labels(*values)


def forget_dead_processes(directory: str) -> list[int]:
    """Prometheus multiprocess mode (several API workers): drop the gauge files of workers
    that are gone. uvicorn's supervisor replaces a worker that died; the dead one's last gauge
    values (its WebSocket clients, say) would otherwise stay in /metrics' sum forever. Its
    counters and histograms stay: what they counted happened. Called as a worker starts;
    returns the pids forgotten."""
    gone: list[int] = []
    for path in Path(directory).glob("gauge_*_*.db"):
        pid_text = path.stem.rsplit("_", 1)[1]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        path.unlink(missing_ok=True)
        gone.append(int(pid_text))
    return sorted(set(gone))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True
