"""Leg states and the one table of allowed transitions (DESIGN §5, FIX 4.4 OrdStatus)."""

from __future__ import annotations

from enum import StrEnum


class LegStatus(StrEnum):
    PLANNED = "planned"
    SUBMITTING = "submitting"
    UNKNOWN = "unknown"
    RETRYING = "retrying"  # the broker did not take it (429, down, circuit open): sent again later
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    CANCELED = "canceled"
    FAILED = "failed"  # a definitive refusal that is not the order's (revoked credentials, …)
    EXPIRED = "expired"  # not placed before its copy deadline despite retries


S = LegStatus

# A status that maps to itself records a fresh observation without moving the leg (a lease
# renewed by a resend, a lookup that still finds nothing, an order still resting, more fills).
# Terminal statuses have no self-loop: settling them twice would release their ledger twice.
TRANSITIONS: dict[LegStatus, frozenset[LegStatus]] = {
    S.PLANNED: frozenset({S.SUBMITTING, S.SKIPPED}),
    S.SUBMITTING: frozenset(
        {
            S.SUBMITTING,
            S.ACCEPTED,
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.REJECTED,
            S.UNKNOWN,
            S.RETRYING,
            S.CANCELED,
            S.FAILED,
            S.EXPIRED,
        }
    ),
    S.UNKNOWN: frozenset(
        {
            S.UNKNOWN,
            S.SUBMITTING,
            S.ACCEPTED,
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.REJECTED,
            S.RETRYING,
            S.CANCELED,
            S.FAILED,
            S.EXPIRED,
        }
    ),
    # Not at the broker: the sweeper sends it again (through submitting) or lets it expire.
    S.RETRYING: frozenset({S.RETRYING, S.SUBMITTING, S.CANCELED, S.FAILED, S.EXPIRED}),
    S.ACCEPTED: frozenset({S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED}),
    S.FILLED: frozenset(),
    S.REJECTED: frozenset(),
    S.SKIPPED: frozenset(),
    S.CANCELED: frozenset(),
    S.FAILED: frozenset(),
    S.EXPIRED: frozenset(),
}

# Moves no broker answer can make: a follower (or an admin) asks to retry a failed leg. It goes
# back in doubt, so the sweeper looks it up by client order id before any resend. Kept out of
# TRANSITIONS on purpose: FAILED stays terminal for every settle, and this move is taken only by
# the retry's own guarded UPDATE (exactly once: the second retry finds the leg no longer failed).
RETRIES: dict[LegStatus, frozenset[LegStatus]] = {
    S.FAILED: frozenset({S.UNKNOWN}),
    S.EXPIRED: frozenset({S.UNKNOWN}),  # not placed before its deadline: a retry gets a new one
}

# The leg has reached the broker (or been refused) and needs nothing more from the sender.
SETTLED = frozenset(
    {
        S.ACCEPTED,
        S.PARTIALLY_FILLED,
        S.FILLED,
        S.REJECTED,
        S.SKIPPED,
        S.CANCELED,
        S.FAILED,
        S.EXPIRED,
    }
)
# No further transition is possible.
TERMINAL = frozenset(status for status, nexts in TRANSITIONS.items() if not nexts)
# Legs whose outcome at the broker is not known yet: only the sweeper may resend these.
IN_DOUBT = frozenset({S.SUBMITTING, S.UNKNOWN})
# What the sweeper works on once its lease runs out: legs in doubt and legs waiting to be resent.
TO_SWEEP = IN_DOUBT | {S.RETRYING}
# Orders resting at the broker: they can fill, be canceled or be replaced.
OPEN_AT_BROKER = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED})
# Not settled yet: the order's fan-out is still going on while any leg is in one of these.
OPEN = frozenset(TRANSITIONS) - SETTLED
# Ended without (all of) their quantity filled: their ledger reservation is given back.
UNFILLED_END = frozenset({S.REJECTED, S.FAILED, S.CANCELED, S.EXPIRED})


class IllegalTransition(ValueError):
    def __init__(self, current: LegStatus, target: LegStatus) -> None:
        super().__init__(f"leg cannot go from {current} to {target}")
        self.current = current
        self.target = target


def can_transition(current: LegStatus, target: LegStatus) -> bool:
    return target in TRANSITIONS[current]


def transition(current: LegStatus, target: LegStatus) -> LegStatus:
    """Return `target` if the move is allowed, else raise IllegalTransition."""
    if not can_transition(current, target):
        raise IllegalTransition(current, target)
    return target


def allowed_moves() -> frozenset[tuple[LegStatus, LegStatus]]:
    """Every (from, to) pair of the table: what the SQL guards of status writes are built from."""
    return frozenset(
        (current, target) for current, nexts in TRANSITIONS.items() for target in nexts
    )


def retry_moves() -> frozenset[tuple[LegStatus, LegStatus]]:
    """Every (from, to) pair of RETRIES: the guard of the retry's status write."""
    return frozenset((current, target) for current, nexts in RETRIES.items() for target in nexts)


def predecessors(target: LegStatus) -> frozenset[LegStatus]:
    """Statuses from which `target` may be reached (used to guard bulk SQL updates)."""
    return frozenset(status for status, nexts in TRANSITIONS.items() if target in nexts)
