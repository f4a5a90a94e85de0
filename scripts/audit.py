"""Offline audit of requirements.lock against an OSV vulnerability database on disk.

No network: the database is a directory of OSV JSON records (or the zip OSV publishes per
ecosystem, e.g. PyPI's `all.zip`), taken from `COPYTRADE_AUDIT_DB` or `.audit-db/` at the
root. Without one the step says so and passes; with one, any pin inside an affected range
(or listed as an affected version) fails it with the advisory ids. `make test` runs it.

    .venv/bin/python scripts/audit.py [--lock requirements.lock] [--db PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)")


def pins(lock: Path) -> dict[str, str]:
    found = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def records(db: Path) -> Iterator[dict[str, Any]]:
    if db.is_file() and db.suffix == ".zip":
        with zipfile.ZipFile(db) as archive:
            for name in archive.namelist():
                if name.endswith(".json"):
                    yield json.loads(archive.read(name))
        return
    for path in sorted(db.rglob("*.json")):
        yield json.loads(path.read_text())


def _in_range(version: Version, events: list[dict[str, str]]) -> bool:
    """OSV ECOSYSTEM range: introduced/fixed/last_affected events, in order."""
    affected = False
    for event in events:
        try:
            if "introduced" in event:
                start = event["introduced"]
                affected = start == "0" or version >= Version(start)
            elif "fixed" in event and affected and version >= Version(event["fixed"]):
                affected = False
            elif "last_affected" in event and affected:
                affected = version <= Version(event["last_affected"])
        except InvalidVersion:
            continue
    return affected


def affects(record: dict[str, Any], name: str, version: str) -> bool:
    for entry in record.get("affected", []):
        package = entry.get("package", {})
        if package.get("ecosystem") != "PyPI" or canonicalize_name(package.get("name", "")) != name:
            continue
        if version in entry.get("versions", []):
            return True
        parsed = Version(version)
        for span in entry.get("ranges", []):
            if span.get("type") == "ECOSYSTEM" and _in_range(parsed, span.get("events", [])):
                return True
    return False


def audit(lock: Path, db: Path) -> list[str]:
    pinned = pins(lock)
    findings = []
    for record in records(db):
        if record.get("withdrawn"):
            continue
        for name, version in pinned.items():
            if affects(record, name, version):
                findings.append(f"{name}=={version}: {record.get('id', '?')}")
    return sorted(findings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    default_db = os.environ.get("COPYTRADE_AUDIT_DB") or str(ROOT / ".audit-db")
    parser.add_argument("--db", type=Path, default=Path(default_db))
    args = parser.parse_args(argv)
    count = len(pins(args.lock))
    if not args.db.exists():
        print(f"audit: no offline vulnerability database at {args.db}; {count} pins not checked")
        return 0
    findings = audit(args.lock, args.db)
    for finding in findings:
        print(f"audit: known-vulnerable pin {finding}")
    print(f"audit: {count} pins checked against {args.db}: {len(findings)} known-vulnerable")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
