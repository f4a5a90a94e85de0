import itertools

import pytest

from replication.state import (
    IN_DOUBT,
    SETTLED,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    LegStatus,
    allowed_moves,
    can_transition,
    predecessors,
    retry_moves,
    transition,
)

S = LegStatus

ALLOWED = {
    (S.PLANNED, S.SUBMITTING),
    (S.PLANNED, S.SKIPPED),
    (S.SUBMITTING, S.SUBMITTING),
    (S.SUBMITTING, S.ACCEPTED),
    (S.SUBMITTING, S.PARTIALLY_FILLED),
    (S.SUBMITTING, S.FILLED),
    (S.SUBMITTING, S.REJECTED),
    (S.SUBMITTING, S.UNKNOWN),
    (S.SUBMITTING, S.CANCELED),
    (S.SUBMITTING, S.FAILED),
    (S.SUBMITTING, S.RETRYING),  # the broker did not take it (429, down)
    (S.SUBMITTING, S.EXPIRED),  # not found and past its copy deadline
    (S.UNKNOWN, S.UNKNOWN),
    (S.UNKNOWN, S.SUBMITTING),
    (S.UNKNOWN, S.ACCEPTED),
    (S.UNKNOWN, S.PARTIALLY_FILLED),
    (S.UNKNOWN, S.FILLED),
    (S.UNKNOWN, S.REJECTED),
    (S.UNKNOWN, S.CANCELED),
    (S.UNKNOWN, S.FAILED),
    (S.UNKNOWN, S.RETRYING),
    (S.UNKNOWN, S.EXPIRED),
    (S.RETRYING, S.RETRYING),
    (S.RETRYING, S.SUBMITTING),  # sent again (the sweeper's resend)
    (S.RETRYING, S.CANCELED),
    (S.RETRYING, S.FAILED),
    (S.RETRYING, S.EXPIRED),
    (S.ACCEPTED, S.ACCEPTED),
    (S.ACCEPTED, S.PARTIALLY_FILLED),
    (S.ACCEPTED, S.FILLED),
    (S.ACCEPTED, S.CANCELED),
    (S.ACCEPTED, S.REJECTED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, S.FILLED),
    (S.PARTIALLY_FILLED, S.CANCELED),
}


@pytest.mark.parametrize("current,target", sorted(itertools.product(S, S)))
def test_every_transition(current: LegStatus, target: LegStatus) -> None:
    if (current, target) in ALLOWED:
        assert can_transition(current, target)
        assert transition(current, target) is target
    else:
        assert not can_transition(current, target)
        with pytest.raises(IllegalTransition):
            transition(current, target)


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(S)


def test_terminal_states_have_no_exit_and_in_doubt_ones_can_settle() -> None:
    assert TERMINAL == {S.FILLED, S.REJECTED, S.SKIPPED, S.CANCELED, S.FAILED, S.EXPIRED}
    assert IN_DOUBT == {S.SUBMITTING, S.UNKNOWN}
    assert not IN_DOUBT & SETTLED
    for status in IN_DOUBT:
        assert TRANSITIONS[status] & SETTLED


def test_predecessors() -> None:
    assert predecessors(S.SKIPPED) == {S.PLANNED}
    assert predecessors(S.UNKNOWN) == {S.SUBMITTING, S.UNKNOWN}
    assert predecessors(S.EXPIRED) == {S.SUBMITTING, S.UNKNOWN, S.RETRYING}


def test_allowed_moves_are_the_table() -> None:
    assert allowed_moves() == ALLOWED


def test_terminal_statuses_never_map_to_themselves() -> None:
    # A terminal self-loop would let a leg be settled twice and release its ledger twice.
    for status in TERMINAL:
        assert (status, status) not in allowed_moves()


def test_a_retry_is_its_own_move_not_a_settle() -> None:
    # The only way out of FAILED is the retry's own entry, back in doubt (the sweeper looks the
    # order up before any resend); no broker answer can take it: FAILED stays terminal.
    assert retry_moves() == {(S.FAILED, S.UNKNOWN), (S.EXPIRED, S.UNKNOWN)}
    assert S.FAILED in TERMINAL
    assert not retry_moves() & allowed_moves()
    assert all(target in IN_DOUBT for _, target in retry_moves())
