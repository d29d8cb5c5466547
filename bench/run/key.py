"""The run key: a sha256 over everything that determines a run, the code it runs included.

The key hashes the resolved config, method options, data file hashes, library versions, the model fingerprint and
the code (syntax tree, docstrings excluded) of every project module the method, the task and the run use.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from core import plugins
from core.files import once_per_version

PROJECT_PACKAGES = ("bench", "core", "methods", "tasks")


def project_modules(*objects: Any) -> list[ModuleType]:
    """The project modules defining `objects` (modules, classes, functions or instances) and every project module
    they reach through their imports, transitively, sorted by name; plugin modules (core.plugins) count as project
    modules. Packages (`methods`, `tasks`: registries that
    reach every method and task) are not followed, so a run depends on the code it uses, not on its neighbours'."""
    found: dict[str, ModuleType] = {}
    plugin_code = plugins.plugin_prefixes()
    pending = [
        obj
        if inspect.ismodule(obj)
        else inspect.getmodule(obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj))
        for obj in objects
    ]
    while pending:
        module = pending.pop()
        if (
            module is None
            or module.__name__ in found
            or not (module.__name__.split(".")[0] in PROJECT_PACKAGES or _within(module.__name__, plugin_code))
            or hasattr(module, "__path__")
        ):
            continue
        found[module.__name__] = module
        for value in vars(module).values():
            if inspect.ismodule(value):
                pending.append(value)
            elif inspect.isclass(value) or inspect.isfunction(value):
                pending.append(inspect.getmodule(value))
    return [found[name] for name in sorted(found)]


def code_digest(source: str) -> str:
    """sha256 of Python source by its syntax tree without docstrings: comments, docstrings and formatting do not count."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and ast.get_docstring(node, clean=False) is not None
        ):
            node.body = node.body[1:]
    return hashlib.sha256(ast.dump(tree, annotate_fields=True, include_attributes=False).encode()).hexdigest()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def source_hash(*objects: Any) -> str:
    """sha256 over the code (`code_digest`) of every project module that `objects` depend on (see `project_modules`)."""
    digest = hashlib.sha256()
    for module in project_modules(*objects):
        digest.update(module.__name__.encode())
        digest.update(once_per_version(Path(inspect.getsourcefile(module)), _file_digest).encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    return code_digest(path.read_text(encoding="utf-8"))


def _stable(value: Any) -> str:
    """JSON fallback that is the same in every process: functions and classes by qualified name."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return str(value)


def content_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=_stable).encode()).hexdigest()
