import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replication.ids import CLIENT_ORDER_ID_LENGTH, client_order_id

uuids = st.uuids().map(str)
actions = st.sampled_from(["open", "cancel", "replace", "close"])


# Computed once from replication/ids.py (unchanged since the first release) and hard-coded on
# purpose. These ids are stored on in-flight legs and sent to brokers as client order ids; if
# the derivation changes, a worker running the new release computes a different id for a leg
# the old release already sent, the broker's client-id uniqueness no longer catches the resend,
# and exactly-once breaks across a deploy. Do not "fix" this table: version the id scheme.
KNOWN_IDS = [
    ("order-1", "account-1", "open", "EYwpXDMhx2KmnWEvBjIX"),
    ("order-1", "account-1", "cancel", "cRvAMnU0xgYHIRgn4TyT"),
    ("order-1", "account-2", "open", "WNxB9BQkBDAQzSbV2uDs"),
    ("order-2", "account-1", "open", "1v4dQIqxNjiRXoG9l1kM"),
    (
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "9c5b94b1-35ad-49bb-b118-8e8fc24abf80",
        "replace",
        "naT6ejJJp0MH9Rck1ABq",
    ),
    (
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        "9c5b94b1-35ad-49bb-b118-8e8fc24abf80",
        "close",
        "BJRkq9jIelG5XSezSiCV",
    ),
]


@pytest.mark.parametrize(("order_id", "account_id", "action", "expected"), KNOWN_IDS)
def test_known_value_is_stable_across_releases(
    order_id: str, account_id: str, action: str, expected: str
) -> None:
    # A change here would make in-flight legs look new to the broker after an upgrade.
    assert client_order_id(order_id, account_id, action) == expected


@given(uuids, uuids, actions)
def test_fits_every_broker(order_id: str, account_id: str, action: str) -> None:
    cid = client_order_id(order_id, account_id, action)
    assert len(cid) == CLIENT_ORDER_ID_LENGTH == 20
    assert re.fullmatch(r"[A-Za-z0-9]{20}", cid)
    assert cid == client_order_id(order_id, account_id, action)


@settings(max_examples=50)
@given(st.lists(st.tuples(uuids, uuids, actions), min_size=2, max_size=400, unique=True))
def test_distinct_inputs_never_collide(triples: list[tuple[str, str, str]]) -> None:
    ids = {client_order_id(*triple) for triple in triples}
    assert len(ids) == len(triples)


def test_no_collisions_over_a_large_fanout() -> None:
    order_ids = [str(uuid.uuid4()) for _ in range(50)]
    account_ids = [str(uuid.uuid4()) for _ in range(2000)]
    ids = {client_order_id(o, a, "open") for o in order_ids for a in account_ids}
    assert len(ids) == 50 * 2000


def test_rejects_empty_parts() -> None:
    with pytest.raises(ValueError):
        client_order_id("", "a", "open")


# Leg ids are stored primary keys: a replanned leg (redelivery, another worker, a new release)
# must get the same id. The fast derivation in replication/plan.py is exactly uuid5.
LEG_NAMESPACE = uuid.UUID("6f1c3c1e-4d0b-4a53-9c55-2f0f3c7c9a11")


@given(uuids, uuids, st.sampled_from(["open", "master", "close", "flatten", "compensate"]))
@settings(max_examples=300)
def test_leg_id_is_uuid5_of_order_account_action(order: str, account: str, action: str) -> None:
    from replication.plan import leg_id

    expected = str(uuid.uuid5(LEG_NAMESPACE, f"{order}/{account}/{action}"))
    assert leg_id(order, account, action) == expected


def test_leg_id_known_value() -> None:
    from replication.plan import leg_id

    # Hard-coded from the uuid5 derivation (see KNOWN_IDS above for why).
    assert leg_id("order-1", "account-1", "open") == "c61ad49d-0a47-5203-909e-ae489a3e808b"
