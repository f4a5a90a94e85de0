"""Locust scenarios against a running stack (`make run`), talking HTTP and WebSocket only.

- MasterUser: signs in as the demo master and places market orders (POST /v1/orders).
- FollowerUser: signs in as a demo follower, opens the dashboard WebSocket and reports, as a
  custom request type "WS", the time from the master's POST returning to the follower's
  `leg.updated` event: Locust's own statistics then show replication latency p50/p95/p99.
- IngestUser (`--class-picker` or `make loadtest-ingest`): the ingest API alone, for a master
  with no followers: accepted orders per second.

The POST return times are shared in process (Locust's default single-process run).
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from typing import Any, ClassVar

import httpx
from gevent.lock import Semaphore
from locust import FastHttpUser, HttpUser, User, between, events, task
from websockets.sync.client import connect

MASTER_EMAIL = os.environ.get("LOCUST_MASTER_EMAIL", "master@demo.copytrade.dev")
MASTER_PASSWORD = os.environ.get("LOCUST_MASTER_PASSWORD", "demo-master-password")
FOLLOWER_PASSWORD = os.environ.get("LOCUST_FOLLOWER_PASSWORD", "demo-follower-password")
FOLLOWERS = int(os.environ.get("LOCUST_DEMO_FOLLOWERS", "200"))
SIM_URL = os.environ.get("LOCUST_SIM_URL", "http://127.0.0.1:8100")
POSTED: dict[str, float] = {}  # order id → when its POST returned (time.time())


def sign_in(client: Any, email: str, password: str) -> str:
    response = client.post(
        "/v1/auth/token", json={"email": email, "password": password}, name="POST /v1/auth/token"
    )
    token: str = response.json()["access_token"]
    return token


class MasterUser(HttpUser):
    wait_time = between(0.5, 1.5)
    weight = 1

    def on_start(self) -> None:
        token = sign_in(self.client, MASTER_EMAIL, MASTER_PASSWORD)
        self.headers = {"authorization": f"Bearer {token}"}
        self.account_id = self.client.get(
            "/v1/accounts", headers=self.headers, name="GET /v1/accounts"
        ).json()[0]["account_id"]

    @task
    def place_order(self) -> None:
        response = self.client.post(
            "/v1/orders",
            headers=self.headers,
            name="POST /v1/orders",
            json={
                "client_order_id": uuid.uuid4().hex,
                "account_id": self.account_id,
                "symbol": "LOCUST",
                "side": random.choice(["buy", "sell"]),
                "qty": "1",
                "type": "market",
                "time_in_force": "day",
            },
        )
        if response.status_code == 202:
            POSTED[response.json()["order_id"]] = time.time()


class FollowerUser(User):
    weight = 4

    def on_start(self) -> None:
        import requests

        self.http = requests.Session()
        index = random.randint(1, FOLLOWERS)
        token = sign_in(
            _Wrapped(self.http, self.host),
            f"follower{index:04d}@demo.copytrade.dev",
            FOLLOWER_PASSWORD,
        )
        ws_token = self.http.post(
            f"{self.host}/v1/ws/token", headers={"authorization": f"Bearer {token}"}
        ).json()["token"]
        url = self.host.replace("http://", "ws://").replace("https://", "wss://") + "/v1/ws"
        self.socket = connect(
            url,
            subprotocols=["copytrade.v1", ws_token],  # type: ignore[list-item]
            origin=self.host,
        )

    @task
    def listen(self) -> None:
        try:
            raw = self.socket.recv(timeout=5)
        except TimeoutError:
            return
        event = json.loads(raw)
        if event["type"] != "leg.updated" or event["order_id"] not in POSTED:
            return
        latency_ms = (time.time() - POSTED[event["order_id"]]) * 1000
        events.request.fire(
            request_type="WS",
            name="POST → leg.updated",
            response_time=latency_ms,
            response_length=len(raw),
            exception=None,
            context={},
        )

    def on_stop(self) -> None:
        self.socket.close()


class _Wrapped:
    """requests.Session with Locust-style (base URL, name=) calls, for sign_in()."""

    def __init__(self, session: Any, host: str) -> None:
        self.session, self.host = session, host

    def post(self, path: str, name: str = "", **kwargs: Any) -> Any:
        return self.session.post(f"{self.host}{path}", **kwargs)


class IngestUser(FastHttpUser):
    """The ingest API alone: masters without followers placing orders as fast as they can.
    Locust's FastHttpUser (geventhttpclient): the load generator shares the stack's two cores,
    and requests' client cost several times more CPU per request. The users share
    INGEST_MASTERS masters (each registered, signed in and linked once, by its first user):
    registering one master per user spent the run hashing passwords (scrypt at the OWASP cost
    is ~0.5 s of CPU each), not placing orders."""

    weight = 1  # run it alone: `make loadtest-ingest` names it on the command line
    wait_time = between(0, 0)
    masters: ClassVar[dict[int, tuple[dict[str, str], str]]] = {}
    _locks: ClassVar[dict[int, Semaphore]] = {}
    _started: ClassVar[list[int]] = [0]

    def on_start(self) -> None:
        slot = self._started[0] % int(os.environ.get("INGEST_MASTERS", "4"))
        self._started[0] += 1
        with self._locks.setdefault(slot, Semaphore()):
            if slot not in self.masters:
                self.masters[slot] = self._new_master()
        self.headers, self.account_id = self.masters[slot]

    def _new_master(self) -> tuple[dict[str, str], str]:
        email = f"ingest-{uuid.uuid4().hex[:10]}@example.test"
        self.client.post(
            "/v1/auth/register",
            name="POST /v1/auth/register",
            json={"email": email, "password": "locust password", "role": "master"},
        )
        token = sign_in(self.client, email, "locust password")
        headers = {"authorization": f"Bearer {token}"}
        account = self.client.post(
            "/v1/accounts",
            headers=headers,
            name="POST /v1/accounts",
            json={
                "broker": "sim",
                "label": "ingest",
                "credentials": self._sim_keys(),
            },
        )
        return headers, str(account.json()["account_id"])

    @staticmethod
    def _sim_keys() -> dict[str, str]:
        """A fresh simulator account (linking verifies the keys at the broker)."""
        response = httpx.post(f"{SIM_URL}/sim/accounts", json={"cash": "100000000"}, timeout=10)
        response.raise_for_status()
        keys = response.json()
        return {"key_id": keys["key_id"], "secret_key": keys["secret_key"]}

    @task
    def place_order(self) -> None:
        self.client.post(
            "/v1/orders",
            headers=self.headers,
            name="POST /v1/orders (ingest)",
            json={
                "client_order_id": uuid.uuid4().hex,
                "account_id": self.account_id,
                "symbol": "INGEST",
                "side": "buy",
                "qty": "1",
                "type": "market",
                "time_in_force": "day",
            },
        )


class HealthzUser(FastHttpUser):
    """The ceiling of `make loadtest-ingest` on this machine: the same client, server and
    framework, and a route that does nothing (no database, no JetStream, no replicator work).
    `make loadtest-ceiling`."""

    weight = 1
    wait_time = between(0, 0)

    @task
    def healthz(self) -> None:
        self.client.get("/healthz", name="GET /healthz")
