"""Fine-tuning methods behind one interface (`methods.base.PeftMethod`), found by name.

Every module in this package that defines a `PeftMethod` subclass with a `name` is registered automatically:
a new method is a new file, here or in a plugin folder or package (core.plugins). `catalogue()` describes the same methods without importing them (for `bench list`).
"""

from __future__ import annotations

import ast
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core import plugins
from core.errors import BenchError

if TYPE_CHECKING:
    from methods.base import PeftMethod

# Modules that only serve methods (the interface, shared steps, training): not scanned for methods.
_INFRASTRUCTURE = {
    "base",
    "density",
    "head_probe",
    "recipes",
    "sparse_update",
    "targets",
    "task_loss",
    "training",
}


def registry() -> dict[str, type[PeftMethod]]:
    """All methods by name: this package's and the plugins' (core.plugins)."""
    from methods.base import PeftMethod

    def named(value: object) -> str | None:
        return (
            value.name if isinstance(value, type) and issubclass(value, PeftMethod) and "name" in vars(value) else None
        )

    return plugins.collect(plugins.package_modules(__name__, __path__, _INFRASTRUCTURE), named)


def get_method(name: str) -> type[PeftMethod]:
    methods = registry()
    if name not in methods:
        raise BenchError(f"unknown method {name!r}", f"use one of: {', '.join(methods)}")
    return methods[name]


@dataclass(frozen=True)
class MethodInfo:
    """What `bench list`, `--help` and reports show of a method, read from its source without importing it (no torch)."""

    name: str
    knob_name: str
    summary: str
    options: tuple[tuple[str, str], ...]  # (option, default as written in the source)
    display_name: str  # the class's own `display_name`/`color` (PeftMethod); "" where it sets none
    color: str


def catalogue() -> dict[str, MethodInfo]:
    """Every registered method's name, knob, one-line summary, options, display name and colour, parsed from the
    package's and the plugin folders' files.

    The same classes `registry()` imports (a class with its own `name` that derives from PeftMethod), so the listing
    costs milliseconds instead of a torch and Lightning import."""
    classes = {
        node.name: node
        for path in _method_files()
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.ClassDef)
    }

    def chain(node: ast.ClassDef) -> list[ast.ClassDef]:
        """`node` and its base classes defined in the package, nearest first."""
        bases = [classes[base.id] for base in node.bases if isinstance(base, ast.Name) and base.id in classes]
        return [node, *(ancestor for base in bases for ancestor in chain(base))]

    def attribute(node: ast.ClassDef, name: str) -> ast.expr | None:
        for owner in chain(node):
            for statement in owner.body:
                if isinstance(statement, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == name for t in statement.targets
                ):
                    return statement.value
        return None

    def options(node: ast.ClassDef) -> tuple[tuple[str, str], ...]:
        fields = {}
        for owner in reversed(chain(node)):
            for statement in owner.body:
                if (
                    isinstance(statement, ast.AnnAssign)
                    and isinstance(statement.target, ast.Name)
                    and statement.value is not None
                ):
                    default = (
                        statement.value.args[0]
                        if isinstance(statement.value, ast.Call) and statement.value.args
                        else statement.value
                    )  # bounded(default, ...)
                    fields[statement.target.id] = ast.unparse(default)
        return tuple(fields.items())

    found = {}
    for node in classes.values():
        own_name = _own_text(node, "name")
        if not own_name or not any(
            isinstance(b, ast.Name) and b.id == "PeftMethod" for c in chain(node) for b in c.bases
        ):
            continue
        options_class = attribute(node, "Options")
        knob = attribute(node, "knob_name")
        found[own_name] = MethodInfo(
            name=own_name,
            knob_name=knob.value if isinstance(knob, ast.Constant) else "",
            summary=((ast.get_docstring(node) or "").strip().splitlines() or [""])[0],
            options=options(classes[options_class.id])
            if isinstance(options_class, ast.Name) and options_class.id in classes
            else (),
            display_name=_own_text(node, "display_name"),
            color=_own_text(node, "color"),
        )
    return dict(sorted(found.items()))


def _own_text(node: ast.ClassDef, name: str) -> str:
    """The string the class body itself assigns to `name` (`name = "x"` or `name: ClassVar[str] = "x"`), else ""."""
    for statement in node.body:
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets = [statement.target]
        else:
            continue
        if any(isinstance(target, ast.Name) and target.id == name for target in targets):
            value = statement.value
            return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else ""
    return ""


def _method_files() -> list[Path]:
    own = [
        Path(__path__[0]) / f"{m.name}.py"
        for m in pkgutil.iter_modules(__path__)
        if m.name not in _INFRASTRUCTURE and not m.name.startswith("_")
    ]
    return own + plugins.plugin_files()
