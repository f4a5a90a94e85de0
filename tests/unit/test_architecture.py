"""The pure core imports only the standard library and the wire schemas (STYLE.md).

The other import rules (layers, broker packages independent, no production import of
`services.dev`) are import-linter contracts in pyproject.toml, checked by `make test`.
"""

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


MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
# A module may be longer, or hold a longer function, only with its reason at its top: a line
# of its docstring starting with "Size:".
SIZED = ("services", "brokers")


def _reason(tree: ast.Module) -> bool:
    doc = ast.get_docstring(tree) or ""
    return any(line.strip().startswith("Size:") for line in doc.splitlines())


@pytest.mark.parametrize("path", [p for package in SIZED for p in modules(package)], ids=str)
def test_functions_and_modules_stay_small(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source)
    if _reason(tree):
        return
    assert source.count("\n") <= MAX_MODULE_LINES, f"{path}: module over {MAX_MODULE_LINES} lines"
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, (
                f"{path}:{node.lineno} {node.name} is {length} lines"
            )
