"""A user's own methods and tasks, from folders or installed packages, without editing this package.

Two sources, both read by `methods.registry()` and `tasks.registry()`:

- folders named in the environment variable `PEFT_BENCH_PLUGINS` (separated by `os.pathsep`; `bench --plugins DIR`
  sets it, so sweep workers inherit it): every `*.py` file in them not starting with `_` is imported as the module
  `peft_bench_plugins.<file stem>`;
- installed packages that declare a module in the entry-point group `peft_bench.plugins`
  (`[project.entry-points."peft_bench.plugins"] my_methods = "my_package.peft_methods"` in their pyproject.toml).

A plugin module defines `PeftMethod` subclasses and `Task` instances exactly as the built-in ones do; its code is
part of the run key of every run that uses it. See examples/plugins/.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from core.errors import BenchError

ENVIRONMENT = "PEFT_BENCH_PLUGINS"
ENTRY_POINT_GROUP = "peft_bench.plugins"
FOLDER_PACKAGE = "peft_bench_plugins"  # the package name given to modules imported from plugin folders


def plugin_folders() -> list[Path]:
    """The folders named in PEFT_BENCH_PLUGINS; BenchError for one that does not exist."""
    folders = [Path(part) for part in os.environ.get(ENVIRONMENT, "").split(os.pathsep) if part]
    for folder in folders:
        if not folder.is_dir():
            raise BenchError(f"plugin folder {folder} does not exist", f"fix {ENVIRONMENT} or --plugins")
    return folders


def plugin_files() -> list[Path]:
    """The Python files of every plugin folder, in a stable order."""
    return [
        path for folder in plugin_folders() for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")
    ]


def plugin_modules() -> list[ModuleType]:
    """Every plugin module, imported once: folder files first, then installed entry points."""
    modules = [_import_file(path) for path in plugin_files()]
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            modules.append(importlib.import_module(entry.value))
        except ImportError as error:
            raise BenchError(
                f"plugin {entry.name} ({entry.value}) of an installed package does not import: {error}",
                "install the plugin's dependencies, or uninstall the package that declares it",
            ) from None
    return modules


def plugin_prefixes() -> tuple[str, ...]:
    """Module-name prefixes of plugin code: the folder package, then each installed entry point's module.

    A module is plugin code when its name equals a prefix or starts with it and a dot; its code then counts in run
    keys. Read once per use, since scanning installed packages takes milliseconds."""
    return (FOLDER_PACKAGE, *(entry.value for entry in entry_points(group=ENTRY_POINT_GROUP)))


def _import_file(path: Path) -> ModuleType:
    name = f"{FOLDER_PACKAGE}.{path.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and Path(loaded.__file__) == path.resolve():
        return loaded
    if loaded is not None and any(other.stem == path.stem and other != path for other in plugin_files()):
        raise BenchError(f"two plugin files are named {path.name} ({loaded.__file__} and {path})", "rename one")
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise BenchError(
            f"plugin file {path} does not import: {type(error).__name__}: {error}", "fix the file"
        ) from None
    return module


def collect(modules: Iterable[ModuleType], named: Callable[[Any], str | None]) -> dict[str, Any]:
    """The objects of `modules` (their globals and a `TASKS` list) that `named` gives a name, sorted by name.

    BenchError when two different objects claim one name, e.g. a plugin method named like a built-in one."""
    found: dict[str, Any] = {}
    for module in modules:
        for value in [*vars(module).values(), *getattr(module, "TASKS", [])]:
            name = named(value)
            if name is None:
                continue
            if name in found and found[name] is not value:
                raise BenchError(f"two definitions claim the name {name!r} (one in {module.__name__})", "rename one")
            found[name] = value
    return dict(sorted(found.items()))


def package_modules(package: str, path: Iterable[str], infrastructure: set[str]) -> list[ModuleType]:
    """The modules of `package` that may define methods or tasks, then every plugin module."""
    own = [
        importlib.import_module(f"{package}.{info.name}")
        for info in pkgutil.iter_modules(path)
        if info.name not in infrastructure and not info.name.startswith("_")
    ]
    return own + plugin_modules()
