"""The embedded servers' passwords in development: generated once into the data directory."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from services.infra.nats_auth import API, GATEWAY, ROLES, WORKER

CREDENTIALS_FILE = "internal-credentials.json"


def internal_credentials(data_dir: Path) -> dict[str, str]:
    """Generate (once) and keep under the data directory, mode 0600, the embedded servers'
    passwords: one per NATS role (`nats_api`, `nats_gateway`, `nats_worker`), `postgres`
    and `valkey`."""
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    names = [f"nats_{role}" for role in ROLES] + ["postgres", "valkey"]
    generated = {name: secrets.token_urlsafe(24) for name in names}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(generated, handle)
    return generated


def nats_passwords(credentials: dict[str, str]) -> dict[str, str]:
    return {role: credentials[f"nats_{role}"] for role in ROLES}


def with_user(url: str, user: str, password: str) -> str:
    """`nats://h:1,nats://h:2` → each server with `user:password@`."""
    return ",".join(
        part.replace("://", f"://{user}:{password}@", 1) for part in url.split(",") if part
    )


def initdb_options(state_dir: Path, password: str | None) -> list[str]:
    """initdb's options: superuser `postgres`, scram-sha-256 with `password` (or trust).
    (A cluster initialised before passwords existed keeps trust: `make clean` starts over.)"""
    base = ["-U", "postgres", "-E", "UTF8", "--no-instructions"]
    if not password:
        return [*base, "--auth=trust"]
    pwfile = state_dir / "pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return [*base, "--auth=scram-sha-256", f"--pwfile={pwfile}"]


def without_user(url: str) -> str:
    """`nats://u:p@h:1,nats://u:p@h:2` → `nats://h:1,nats://h:2`."""
    return ",".join(re.sub(r"://[^@/]*@", "://", part) for part in url.split(",") if part)


def role_env(child: str, url: str, passwords: dict[str, str]) -> dict[str, str]:
    """A launcher child's NATS identity: the API (its dashboard gateway on a user of its own),
    the workers, or none (the simulator); the URL without the launcher's own credentials."""
    plain = {"COPYTRADE_NATS_URL": without_user(url), "COPYTRADE_NATS_PASSWORD": ""}
    if child == "api":
        return {
            **plain,
            "COPYTRADE_NATS_USER": API,
            "COPYTRADE_NATS_PASSWORD": passwords[API],
            "COPYTRADE_NATS_GATEWAY_PASSWORD": passwords[GATEWAY],
        }
    if child == "simulator":
        return plain
    return {**plain, "COPYTRADE_NATS_USER": WORKER, "COPYTRADE_NATS_PASSWORD": passwords[WORKER]}
