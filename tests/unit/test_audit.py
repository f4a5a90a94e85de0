"""The offline audit step (scripts/audit.py) over a small OSV database made here."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import audit  # noqa: E402


def _advisory(package: str, events: list[dict[str, str]], versions: list[str]) -> dict[str, object]:
    return {
        "id": f"TEST-{package}",
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                "versions": versions,
            }
        ],
    }


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.lock"
    path.write_text(
        "# header\nAlembic==1.20.1 \\\n    --hash=sha256:00\n"
        "httpx==0.28.1 \\\n    --hash=sha256:11\n"
    )
    return path


def test_no_database_passes_and_says_so(
    lock: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit.main(["--lock", str(lock), "--db", str(tmp_path / "absent")]) == 0
    assert "no offline vulnerability database" in capsys.readouterr().out


def test_a_vulnerable_pin_fails_and_a_fixed_one_passes(lock: Path, tmp_path: Path) -> None:
    db = tmp_path / "osv"
    db.mkdir()
    fixed_before = _advisory("alembic", [{"introduced": "0"}, {"fixed": "1.2.0"}], [])
    (db / "old.json").write_text(json.dumps(fixed_before))
    (db / "other.json").write_text(json.dumps(_advisory("requests", [{"introduced": "0"}], [])))
    assert audit.main(["--lock", str(lock), "--db", str(db)]) == 0
    hit = _advisory("alembic", [{"introduced": "1.20.0"}, {"last_affected": "1.20.1"}], [])
    (db / "hit.json").write_text(json.dumps(hit))
    assert audit.audit(lock, db) == ["alembic==1.20.1: TEST-alembic"]
    assert audit.main(["--lock", str(lock), "--db", str(db)]) == 1


def test_the_osv_zip_and_listed_versions(lock: Path, tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("PYSEC-1.json", json.dumps(_advisory("HTTPX", [], ["0.28.1"])))
    assert audit.audit(lock, archive) == ["httpx==0.28.1: TEST-HTTPX"]


def test_the_project_lock_file_parses() -> None:
    pinned = audit.pins(ROOT / "requirements.lock")
    assert len(pinned) > 10 and all(version[0].isdigit() for version in pinned.values())
