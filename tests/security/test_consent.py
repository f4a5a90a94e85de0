"""Consent to be copied: copy access, invites, the master's view of its followers, and what a
follower's copy details show of the master."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.api.views import copy_out
from services.infra.db.repositories.legs import Leg
from tests.security.conftest import AppFactory, Client, random_address

SIZING = {"mode": "fixed", "qty": "1"}


async def _follower(client: Client, sim_url: str) -> tuple[str, str, str]:
    user_id, token = await client.user("follower")
    return user_id, token, await client.sim_account(token, sim_url)


async def _subscribe(
    client: Client, token: str, master_id: str, account_id: str, code: str | None = None
) -> Any:
    body: dict[str, Any] = {"master_id": master_id, "account_id": account_id, "sizing": SIZING}
    if code is not None:
        body["invite_code"] = code
    return await client.http.post("/v1/subscriptions", headers=client.auth(token), json=body)


async def test_a_master_is_invite_only_by_default(api_app: AppFactory, simulator: str) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        master_id, master = await client.user("master")
        _, token, account = await _follower(client, simulator)
        refused = await _subscribe(client, token, master_id, account)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "invite_required"
        bogus = await _subscribe(client, token, master_id, account, "not-a-code")
        assert bogus.status_code == 403
        r = await client.http.post(
            "/v1/masters/me/invites", headers=client.auth(master), json={"max_uses": 1}
        )
        assert r.status_code == 201 and r.json()["expires_at"]
        code = r.json()["invite_code"]
        assert (await _subscribe(client, token, master_id, account, code)).status_code == 201
        _, other, other_account = await _follower(client, simulator)
        spent = await _subscribe(client, other, master_id, other_account, code)
        assert spent.status_code == 403 and spent.json()["error"]["code"] == "invite_required"


async def test_an_invite_of_one_master_does_not_open_another(
    api_app: AppFactory, simulator: str
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        _, master_a = await client.user("master")
        master_b_id, _ = await client.user("master")
        code = (
            await client.http.post("/v1/masters/me/invites", headers=client.auth(master_a), json={})
        ).json()["invite_code"]
        _, token, account = await _follower(client, simulator)
        r = await _subscribe(client, token, master_b_id, account, code)
        assert r.status_code == 403


async def test_open_and_closed_masters(api_app: AppFactory, simulator: str) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        open_id, _ = await client.user("master", copy_access="open")
        closed_id, closed = await client.user("master", copy_access="closed")
        _, token, account = await _follower(client, simulator)
        assert (await _subscribe(client, token, open_id, account)).status_code == 201
        code = (
            await client.http.post("/v1/masters/me/invites", headers=client.auth(closed), json={})
        ).json()["invite_code"]
        r = await _subscribe(client, token, closed_id, account, code)
        assert r.status_code == 403 and r.json()["error"]["code"] == "master_closed"
        r = await client.http.patch(
            "/v1/masters/me", headers=client.auth(token), json={"copy_access": "open"}
        )
        assert r.status_code == 403  # followers have no copy access to set


async def test_a_master_lists_and_removes_followers_without_their_identities(
    api_app: AppFactory, simulator: str
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        master_id, master = await client.user("master", copy_access="open")
        _, other_master = await client.user("master")
        follower_id, token, account = await _follower(client, simulator)
        subscription = (await _subscribe(client, token, master_id, account)).json()
        listed = await client.http.get("/v1/masters/me/followers", headers=client.auth(master))
        assert listed.status_code == 200
        (row,) = listed.json()
        assert row["subscription_id"] == subscription["subscription_id"]
        assert row["ending_at"] is None
        assert follower_id not in listed.text and account not in listed.text
        assert "sizing" not in row and "caps" not in row
        path = f"/v1/masters/me/followers/{subscription['subscription_id']}"
        assert (
            await client.http.delete(path, headers=client.auth(other_master))
        ).status_code == 404
        assert (await client.http.delete(path, headers=client.auth(master))).status_code == 204
        (row,) = (
            await client.http.get("/v1/masters/me/followers", headers=client.auth(master))
        ).json()
        assert row["ending_at"] is not None  # ended like follow_exits: exits still copied
        assert (await client.http.delete(path, headers=client.auth(master))).status_code == 404
        assert (await client.http.delete(path, headers=client.auth(token))).status_code == 403


def test_copy_details_never_show_the_masters_absolute_figures() -> None:
    values: dict[str, Any] = {f.name: None for f in fields(Leg)}
    now = datetime.now(UTC)
    values.update(
        id=uuid.uuid4(),
        order_id=uuid.uuid4(),
        master_id=uuid.uuid4(),
        account_id=uuid.uuid4(),
        symbol="AAPL",
        side="buy",
        qty=Decimal("2"),
        filled_qty=Decimal("2"),
        status="filled",
        client_order_id="c1",
        created_at=now,
        updated_at=now,
        details={
            "master_qty": "70",
            "master_position": "1234",
            "master_equity": "175000",
            "follower_equity": "25000",
            "follower_position": "3",
            "raw_qty": "10",
            "mode": "equity_ratio",
        },
    )
    details = copy_out(Leg(**values)).details
    shown = str(details)
    assert "175000" not in shown and "1234" not in shown and "70" not in shown
    assert details["equity_ratio"] == "0.142857"
    assert details["size_ratio"] == "0.142857"
    assert details["follower_equity"] == "25000" and details["follower_position"] == "3"
