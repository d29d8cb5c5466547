"""The dependency direction: methods and tasks are the core, the harness (bench) depends on them, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"methods": {"bench"}, "tasks": {"bench"}, "core": {"bench", "methods", "tasks"}}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at any depth of its code (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_the_layers_above_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    offenders = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package]) for path in files}
    assert not {path: names for path, names in offenders.items() if names}


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("def f():\n    from bench.store import Store\n    import bench.run\n", encoding="utf-8")
    assert imported_packages(module) == {"bench"}
