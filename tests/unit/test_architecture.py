"""Dependencies point inward: services → brokers → replication → schemas (STYLE.md)."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("schemas", "replication", "brokers", "services")


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules("replication"), ids=str)
def test_the_core_uses_only_the_standard_library_and_schemas(path: Path) -> None:
    for name in imports(path):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top in ("replication", "schemas"), (path, name)


@pytest.mark.parametrize("path", modules("schemas"), ids=str)
def test_schemas_import_nothing_of_ours(path: Path) -> None:
    for name in imports(path):
        assert name.split(".")[0] not in ("replication", "brokers", "services"), (path, name)


@pytest.mark.parametrize("path", modules("brokers"), ids=str)
def test_brokers_never_import_services_nor_each_other(path: Path) -> None:
    own = path.relative_to(ROOT / "brokers").parts[0]
    for name in imports(path):
        parts = name.split(".")
        assert parts[0] != "services", (path, name)
        if parts[0] == "brokers" and len(parts) > 2 and own.isidentifier() and own != parts[1]:
            # a broker package may use shared modules (brokers.http, brokers.transport), not
            # another broker's package
            assert parts[1] not in ("alpaca", "binance", "kite", "sim"), (path, name)
