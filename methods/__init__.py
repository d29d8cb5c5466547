"""Fine-tuning methods behind one interface (`methods.base.PeftMethod`), found by name.

Every module in this package that defines a `PeftMethod` subclass with a `name` is registered automatically:
a new method is a new file.
"""

from __future__ import annotations

import importlib
import pkgutil

from bench.errors import BenchError
from methods.base import PeftMethod

_INFRASTRUCTURE = {"base", "targets"}


def registry() -> dict[str, type[PeftMethod]]:
    """All methods by name."""
    found: dict[str, type[PeftMethod]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in _INFRASTRUCTURE or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, PeftMethod) and "name" in vars(value):
                found[value.name] = value
    return dict(sorted(found.items()))


def get_method(name: str) -> type[PeftMethod]:
    methods = registry()
    if name not in methods:
        raise BenchError(f"unknown method {name!r}", f"use one of: {', '.join(methods)}")
    return methods[name]
