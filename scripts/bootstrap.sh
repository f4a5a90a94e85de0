#!/usr/bin/env bash
# Creates .venv and installs the pinned dependencies when pyproject.toml changed.
# Idempotent: a stamp file records the hash of what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
EXTRAS=${EXTRAS:-test}
want="$(sha256sum pyproject.toml | cut -c1-16)-${EXTRAS}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.installed" 2>/dev/null || true)" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[${EXTRAS}]"
    echo "$want" > "$VENV/.installed"
fi
