"""NATS users per service role, and the permissions each is given by the server.

- `api`: publishes master orders (`orders.>`) and sweep requests, reads the streams' info
  (its readiness and start-up check) and subscribes to the events its dashboard forwards. It
  cannot publish shards, consume, ack or change a stream.
- `gateway`: the dashboard gateway's own connection: subscribes to events, publishes nothing.
- `worker`: replicators, sweeper, poller (and the launcher's start-up): everything, including
  the JetStream API (streams, consumers, fetch, ack) and the shards subject.

The embedded server (services/dev/embedded.py) and deploy/nats/*.conf render these;
`tests/unit/test_deploy.py` checks the deploy files grant the api and gateway nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from schemas.messages import ORDERS_STREAM, ORDERS_SUBJECT_PREFIX, SHARDS_STREAM, SWEEP_NOW_SUBJECT

API = "api"
GATEWAY = "gateway"
WORKER = "worker"
ROLES = (API, GATEWAY, WORKER)

EVENTS = "events.>"
# services/infra/webhook_bus.py (kept literal here: that module imports the NATS client stack)
WEBHOOKS_STREAM = "WEBHOOKS"
WEBHOOK_EVENTS_SUBJECT = "webhooks.events"

PERMISSIONS: dict[str, dict[str, dict[str, list[str]]]] = {
    API: {
        "publish": {
            "allow": [
                f"{ORDERS_SUBJECT_PREFIX}.>",
                SWEEP_NOW_SUBJECT,
                "$JS.API.INFO",
                f"$JS.API.STREAM.INFO.{ORDERS_STREAM}",
                f"$JS.API.STREAM.INFO.{SHARDS_STREAM}",
                # webhook events the API announces itself (account.halted) and their stream
                WEBHOOK_EVENTS_SUBJECT,
                f"$JS.API.STREAM.INFO.{WEBHOOKS_STREAM}",
            ]
        },
        "subscribe": {"allow": ["_INBOX.>", EVENTS]},
    },
    GATEWAY: {"publish": {"deny": [">"]}, "subscribe": {"allow": [EVENTS]}},
    WORKER: {"publish": {"allow": [">"]}, "subscribe": {"allow": [">"]}},
}


def authorization_block(passwords: Mapping[str, str]) -> str:
    """The server's `authorization { users = [...] }` for these passwords (JSON is valid NATS
    configuration syntax)."""
    users = [
        {"user": role, "password": passwords[role], "permissions": PERMISSIONS[role]}
        for role in ROLES
    ]
    return "authorization {\n  users = " + json.dumps(users, indent=2) + "\n}\n"


def password_variable(role: str) -> str:
    """The environment variable the deployed servers read a role's password from."""
    return f"NATS_{role.upper()}_PASSWORD"


def deploy_authorization_block() -> str:
    """The block in deploy/nats/*.conf: the same users, passwords from the environment."""
    block = authorization_block({role: password_variable(role) for role in ROLES})
    for role in ROLES:
        block = block.replace(f'"{password_variable(role)}"', f"${password_variable(role)}")
    return block
