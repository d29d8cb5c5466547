"""Benchmark tasks, found by name (`family/task`).

Every module in this package may define `Task` instances at module level, or a module-level list `TASKS` of them;
each one is registered by its `name`. YAML declarations in `tasks/yaml/` are loaded by `tasks/declared.py`.
A new task is a new instance, a new file, or a new YAML (see tasks/README.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from core.errors import BenchError

if TYPE_CHECKING:
    from tasks.base import Task

_INFRASTRUCTURE = {
    "base",
    "data_source",
    "metrics",
    "prompts",
    "extraction",
    "generation",
    "lm_eval_bridge",
    "leakage",
    "instruction",
}


def registry() -> dict[str, Task]:
    """All tasks by name (imports every task module, and torch with them)."""
    from tasks.base import Task

    found: dict[str, Task] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name in _INFRASTRUCTURE or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in [*vars(module).values(), *getattr(module, "TASKS", [])]:
            if isinstance(value, Task):
                found[value.name] = value
    return dict(sorted(found.items()))


def get_task(name: str) -> Task:
    tasks = registry()
    if name not in tasks:
        raise BenchError(f"unknown task {name!r}", f"use one of: {', '.join(tasks)}")
    return tasks[name]
