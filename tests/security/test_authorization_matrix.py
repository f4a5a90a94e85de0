"""A two-tenant authorization matrix generated from the OpenAPI document: every route, called
by every role of tenant A with tenant B's ids (in the path, the query and the body), answers
4xx without a 5xx and without any of B's data; afterwards B's state is unchanged.

Admin routes called by the admin are left out: acting on any tenant is what that role is for
(and a global halt would reach other tests' data)."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.infra.auth import hash_password
from services.infra.db.repositories.users import create_user
from tests.security.conftest import PASSWORD, AppFactory, Client, random_address

SIZING = {"mode": "fixed", "qty": "1"}


@dataclass
class Tenant:
    tokens: dict[str, str] = field(default_factory=dict)  # role → access token
    ids: dict[str, str] = field(default_factory=dict)  # what → id
    emails: list[str] = field(default_factory=list)


async def _tenant(client: Client, sim_url: str) -> Tenant:
    tenant = Tenant()
    master_id, master = await client.user("master", copy_access="open")
    follower_id, follower = await client.user("follower")
    tenant.tokens = {"master": master, "follower": follower}
    master_account = await client.sim_account(master, sim_url)
    follower_account = await client.sim_account(follower, sim_url)
    r = await client.http.post(
        "/v1/subscriptions",
        headers=client.auth(follower),
        json={"master_id": master_id, "account_id": follower_account, "sizing": SIZING},
    )
    assert r.status_code == 201, r.text
    order = await client.http.post(
        "/v1/orders",
        headers=client.auth(master),
        json={
            "client_order_id": os.urandom(8).hex(),
            "account_id": master_account,
            "symbol": "AAPL",
            "side": "buy",
            "qty": "1",
            "type": "limit",
            "limit_price": "1",
            "time_in_force": "day",
        },
    )
    assert order.status_code == 202, order.text
    tenant.ids = {
        "master_id": master_id,
        "follower_id": follower_id,
        "master_account": master_account,
        "follower_account": follower_account,
        "subscription_id": r.json()["subscription_id"],
        "order_id": order.json()["order_id"],
    }
    return tenant


def _value(name: str, victim: Tenant) -> list[str]:
    """B's ids that fit a parameter name."""
    if name == "account_id":
        return [victim.ids["master_account"], victim.ids["follower_account"]]
    return [victim.ids[name]] if name in victim.ids else [str(uuid.uuid4())]


def _body(method: str, path: str, victim: Tenant) -> dict[str, Any]:
    ids = victim.ids
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/subscriptions"): {
            "master_id": ids["master_id"],
            "account_id": ids["follower_account"],
            "sizing": SIZING,
        },
        ("POST", "/v1/orders"): {
            "client_order_id": os.urandom(8).hex(),
            "account_id": ids["master_account"],
            "symbol": "AAPL",
            "side": "sell",
            "qty": "1",
            "type": "market",
            "time_in_force": "day",
        },
        ("PATCH", "/v1/subscriptions/{subscription_id}"): {"paused": True},
        ("PATCH", "/v1/accounts/{account_id}"): {"label": "taken over"},
        ("PATCH", "/v1/orders/{order_id}"): {"qty": "500"},
    }
    return bodies.get((method, path), {})


def _enum(schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    """The values of an enum parameter (through `$ref` and `anyOf`), else []."""
    if "$ref" in schema:
        return _enum(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    values: list[str] = list(schema.get("enum", []))
    for option in schema.get("anyOf", []):
        values += _enum(option, components)
    return values


def _queries(operation: dict[str, Any], victim: Tenant, components: dict[str, Any]) -> list[Any]:
    """B's ids in the `*_id` query parameters; once more with each value of each enum parameter
    (e.g. `DELETE /v1/accounts/{id}?positions=close`)."""
    parameters = [p for p in operation.get("parameters", []) if p["in"] == "query"]
    base = {
        p["name"]: _value(p["name"], victim)[0] for p in parameters if p["name"].endswith("_id")
    }
    return [base] + [
        {**base, p["name"]: value}
        for p in parameters
        for value in _enum(p.get("schema", {}), components)
    ]


def _calls(app: FastAPI, victim: Tenant) -> list[tuple[str, str, str, dict[str, Any], Any]]:
    """(method, template, url, query, body) for every operation of the OpenAPI document."""
    calls = []
    document = app.openapi()
    components = document.get("components", {}).get("schemas", {})
    for template, operations in document["paths"].items():
        for method, operation in operations.items():
            method = method.upper()
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
            body = _body(method, template, victim) if "requestBody" in operation else None
            urls = [template]
            for name in names:
                urls = [
                    url.replace("{" + name + "}", value)
                    for url in urls
                    for value in _value(name, victim)
                ]
            calls += [
                (method, template, url, query, body)
                for url in urls
                for query in _queries(operation, victim, components)
            ]
    return calls


def _leaks(text: str, victim: Tenant, sent: str) -> list[str]:
    secrets = [*victim.ids.values(), *victim.emails]
    return [s for s in secrets if s in text and s not in sent]


async def _admin_token(engine: AsyncEngine, client: Client) -> str:
    email = f"admin-{os.urandom(6).hex()}@security.test"
    async with engine.begin() as conn:
        await create_user(conn, str(uuid.uuid4()), email, hash_password(PASSWORD, 1024), "admin")
    r = await client.http.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    token: str = r.json()["access_token"]
    return token


async def test_no_route_lets_one_tenant_reach_another(
    api_app: AppFactory, simulator: str, engine: AsyncEngine
) -> None:
    async with api_app() as app:
        client = Client(app, random_address())
        attacker, victim = await _tenant(client, simulator), await _tenant(client, simulator)
        roles = {**attacker.tokens, "admin": await _admin_token(engine, client)}
        problems: list[str] = []
        calls = _calls(app, victim)
        assert len(calls) > 30
        for role, token in roles.items():
            for method, template, url, query, body in calls:
                if role == "admin" and template.startswith("/v1/admin/"):
                    continue
                r = await client.http.request(
                    method, url, params=query, json=body, headers=client.auth(token)
                )
                carries_victim_id = any(
                    v in url + str(query) + str(body) for v in victim.ids.values()
                )
                label = f"{role} {method} {url} {query} → {r.status_code}"
                if r.status_code >= 500:
                    problems.append(f"5xx: {label}")
                elif carries_victim_id and r.status_code < 400 and r.json() != []:
                    # (a list filtered by B's id may answer 200 with nothing in it)
                    problems.append(f"reached: {label} {r.text[:200]}")
                leaked = _leaks(r.text, victim, url + str(query) + str(body))
                if leaked:
                    problems.append(f"leak: {label} {leaked}")
        assert not problems, "\n".join(problems)
        await _victim_unchanged(client, victim)


async def _victim_unchanged(client: Client, victim: Tenant) -> None:
    ids = victim.ids
    follower, master = (client.auth(victim.tokens[r]) for r in ("follower", "master"))
    (subscription,) = (await client.http.get("/v1/subscriptions", headers=follower)).json()
    assert subscription["paused"] is False
    for auth, account in ((follower, "follower_account"), (master, "master_account")):
        (row,) = (await client.http.get("/v1/accounts", headers=auth)).json()
        assert row["account_id"] == ids[account]
        assert (row["label"], row["halted"]) == ("sim", False)
    order = (await client.http.get(f"/v1/orders/{ids['order_id']}", headers=master)).json()
    assert order["cancel_requested"] is False and order["qty"] == "1"
    (follower_row,) = (await client.http.get("/v1/masters/me/followers", headers=master)).json()
    assert follower_row["ending_at"] is None
    assert re.fullmatch(r"[0-9a-f-]{36}", follower_row["subscription_id"])
