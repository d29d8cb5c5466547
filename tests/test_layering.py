"""The architecture the code must keep (ARCHITECTURE.md): which layer may import which, no import circle, short functions.

Imports are read from the source, lazy (function-local) ones included; imports under `if TYPE_CHECKING:` are for type
checkers only and never run, so they do not count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "core", "methods", "tasks")
MAX_FUNCTION_LINES = 80

# Top-level packages: methods and tasks are independent of each other and of the harness; core is below them all.
FORBIDDEN_PACKAGES = {
    "methods": {"bench", "tasks"},
    "tasks": {"bench", "methods"},
    "core": {"bench", "methods", "tasks"},
}
# Layers inside bench/, bottom up: records <- run <- sweep, records <- report; the commands (bench/*.py) on top.
COMMANDS = "bench.commands"  # how `layer_of` names the top-level modules bench/cli.py, bench/reevaluate.py, ...
FORBIDDEN_LAYERS = {
    "bench.records": {"bench.run", "bench.sweep", "bench.report", COMMANDS},
    "bench.run": {"bench.sweep", "bench.report", COMMANDS},
    "bench.sweep": {COMMANDS},
    "bench.report": {"bench.run", "bench.sweep", COMMANDS},
}
# What the report layer may read of the layers it does not depend on: the budget vocabulary its axes are labelled
# with, and the learning-rate policy its tuning section explains. Never a run's internals.
REPORT_MAY_READ = {"bench.run.budget", "bench.sweep.tuning"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(path, root): path for package in PACKAGES for path in sorted((root / package).rglob("*.py"))}


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` outside `if TYPE_CHECKING:` blocks."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        yield node
        pending.extend(ast.iter_child_nodes(node))


def imported_modules(path: Path, known: set[str] | None = None) -> set[str]:
    """Every module `path` imports at run time, at any depth of its code. With `known` (project module names),
    `from package import module` resolves to the module, and names of other libraries are left out."""
    names = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & (known or set())
            names |= submodules or {node.module}
    return names if known is None else names & known


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every module `path` imports at run time."""
    return {name.split(".")[0] for name in imported_modules(path)}


def layer_of(module: str) -> str:
    """`bench.run.plan` -> `bench.run`; a module directly in bench/ is a command (`bench.commands`)."""
    parts = module.split(".")
    if parts[0] != "bench":
        return parts[0]
    return ".".join(parts[:2]) if len(parts) > 2 else COMMANDS


@cache
def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = project_files(root)
    return {name: imported_modules(path, set(files)) - {name} for name, path in files.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted: every import circle."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            group = [stack.pop()]
            while group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN_PACKAGES))
def test_package_does_not_import_the_layers_above_or_beside_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN_PACKAGES[package]) for path in files
    }
    assert not {path: names for path, names in offenders.items() if names}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_LAYERS))
def test_bench_layer_does_not_import_the_layers_above_it(layer: str) -> None:
    graph = import_graph()
    modules = [module for module in graph if layer_of(module) == layer]
    assert modules
    allowed = REPORT_MAY_READ if layer == "bench.report" else set()
    offenders = {
        module: sorted(t for t in targets if layer_of(t) in FORBIDDEN_LAYERS[layer] and t not in allowed)
        for module, targets in graph.items()
        if module in modules
    }
    assert not {module: targets for module, targets in offenders.items() if targets}


def test_no_import_circle_among_the_projects_modules() -> None:
    assert import_circles(import_graph()) == []


@pytest.mark.parametrize("package", ["bench", "methods", "tasks"])
def test_no_function_is_longer_than_the_limit(package: str) -> None:
    offenders = {str(path.relative_to(ROOT)): long_functions(path) for path in sorted((ROOT / package).rglob("*.py"))}
    assert not {path: names for path, names in offenders.items() if names}


def test_the_checks_see_lazy_imports_circles_and_long_functions(tmp_path: Path) -> None:
    """Each check fails on a planted case: a lazy import, a circle hidden behind one, a type-only import that is not
    one, and a function one line over the limit."""
    module = tmp_path / "module.py"
    module.write_text("def f():\n    from bench.records.store import Store\n    import bench.run\n", encoding="utf-8")
    assert imported_packages(module) == {"bench"}
    package = tmp_path / "bench"
    package.mkdir()
    (package / "a.py").write_text("from bench import b\n", encoding="utf-8")
    (package / "b.py").write_text("def f():\n    from bench.a import x\n", encoding="utf-8")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bench.a import x\n", encoding="utf-8"
    )
    assert import_circles(import_graph(tmp_path)) == [["bench.a", "bench.b"]]
    body = "".join("    x = 1\n" for _ in range(MAX_FUNCTION_LINES))
    module.write_text(f"def long():\n{body}\ndef short():\n    pass\n", encoding="utf-8")
    assert long_functions(module) == [f"long ({MAX_FUNCTION_LINES + 1} lines)"]
