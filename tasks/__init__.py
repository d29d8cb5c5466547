"""Benchmark tasks, found by name (`family/task`).

Every module in this package may define `Task` instances at module level, or a module-level list `TASKS` of them;
each one is registered by its `name`. YAML declarations in `tasks/yaml/` are loaded by `tasks/declared.py`.
A new task is a new instance, a new file, a new YAML (see tasks/README.md), or a plugin (core.plugins).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import plugins
from core.errors import BenchError

if TYPE_CHECKING:
    from tasks.base import Task

_INFRASTRUCTURE = {
    "base",
    "data_source",
    "metrics",
    "prompts",
    "extraction",
    "formulations",
    "generation",
    "lm_eval_bridge",
    "leakage",
    "instruction",
}


def registry() -> dict[str, Task]:
    """All tasks by name, this package's and the plugins' (core.plugins); imports every task module (not torch)."""
    from tasks.base import Task

    return plugins.collect(
        plugins.package_modules(__name__, __path__, _INFRASTRUCTURE),
        lambda value: value.name if isinstance(value, Task) else None,
    )


def get_task(name: str) -> Task:
    tasks = registry()
    if name not in tasks:
        raise BenchError(f"unknown task {name!r}", f"use one of: {', '.join(tasks)}")
    return tasks[name]
