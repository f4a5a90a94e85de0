"""What the chaos modules share."""

from __future__ import annotations

# Every chaos stack's timings: short leases, grace and sweeps, so a fault heals in seconds.
FAST_RECOVERY = {
    "COPYTRADE_LEG_LEASE_S": "3",
    "COPYTRADE_RESEND_GRACE_S": "1",
    "COPYTRADE_UNKNOWN_RECHECK_S": "0.5",
    "COPYTRADE_CONSUMER_ACK_WAIT_S": "5",
    "COPYTRADE_SWEEP_INTERVAL_S": "0.2",
    "COPYTRADE_SNAPSHOT_DEADLINE_S": "1",
}
