"""The import rules of docs/architecture.md, asserted from the source (``make lint`` runs the same
rules through import-linter, ``[tool.importlinter]`` in pyproject.toml).

Every ``import`` / ``from … import`` of every module (at any depth, including imports inside
functions) is read with :mod:`ast`; the first dotted component is the package imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"signals", "warehouse", "reports", "dashboard", "api", "assets", "sample_data", "tests", "benchmarks"}

# package -> the project packages it may import (itself always allowed)
ALLOWED: dict[str, set[str]] = {
    "signals": set(),
    "warehouse": {"signals"},  # signals only if unavoidable (today: engine/fanout.py runs them per product bucket)
    "reports": {"signals"},
    "sample_data": set(),
    "dashboard": {"warehouse", "signals", "reports"},
    "api": {"warehouse", "signals", "reports"},
    "assets": {"warehouse", "signals", "reports", "dashboard", "api", "sample_data"},
    "tests": PROJECT - {"benchmarks"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out & PROJECT


def violations(package: str) -> list[str]:
    allowed = ALLOWED[package] | {package}
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in sorted(imported_packages(path) - allowed):
            found.append(f"{path.relative_to(ROOT)} imports {imported}")
    return found


@pytest.mark.parametrize("package", sorted(p for p in ALLOWED if (ROOT / p).is_dir()))
def test_package_imports_only_what_it_may(package):
    assert violations(package) == []


def test_the_checker_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from warehouse.schema import connect\n    import reports.alerts\n")
    assert imported_packages(bad) == {"warehouse", "reports"}
