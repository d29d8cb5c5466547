"""Planning a run: check its input and compute its run key without loading weights.

`plan` checks the settings, the method options and the budget (solved on a weightless meta-device model), reads the
task data and computes the run key, so a sweep can skip stored runs; bench.run.execute does the work. Bad input
raises BenchError before anything is written.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bench.records.environment import library_versions
from bench.records.record import SCHEMA_VERSION
from bench.run import execute, models
from bench.run.budget import Budget, parse_budget, solve_knob
from bench.run.config import RunConfig
from bench.run.key import content_key, source_hash
from core.errors import BenchError
from methods import get_method
from methods.recipes import resolve
from tasks import get_task
from tasks.data_source import DataSource

if TYPE_CHECKING:
    from methods.base import MethodOptions, PeftMethod
    from methods.recipes import Resolved
    from tasks.base import Task


@dataclass
class RunPlan:
    """A checked run: resolved parts, the data it reads and its content key."""

    config: RunConfig
    method_cls: type[PeftMethod]
    task: Task
    budget: Budget | None
    source: DataSource
    splits: dict[str, list[dict[str, Any]]]
    fingerprint: models.Fingerprint
    key: str
    requested: int | None  # the budget as a parameter count of this model (None: no budget)
    recipe: Resolved  # the effective options and optimiser settings

    @property
    def lr(self) -> float:
        return self.recipe.optim.lr


def plan(config: RunConfig) -> RunPlan:
    """Check `config` and read the task data; BenchError on bad input. Loads no weights."""
    method_cls = get_method(config.method)
    task = with_prompt_masking(get_task(config.task), config.mask_prompt)
    budget = parse_budget(config.budget) if config.budget is not None else None
    recipe = resolve(
        method_cls,
        config.recipe,
        task.model_kind,
        config.options,
        config.max_steps,
        config.lr,
        config.weight_decay,
        config.warmup_ratio,
    )
    models.check_model_name(config.model)
    source = DataSource(config.data_dir)
    splits = _read_splits(config, task, source)
    requested = _check_budget(config, method_cls, task, budget, recipe.options)
    fingerprint = models.model_fingerprint(config.model)
    return RunPlan(
        config=config,
        method_cls=method_cls,
        task=task,
        budget=budget,
        source=source,
        splits=splits,
        fingerprint=fingerprint,
        key=_run_key(config, method_cls, task, recipe, source, fingerprint),
        requested=requested,
        recipe=recipe,
    )


def _read_splits(config: RunConfig, task: Task, source: DataSource) -> dict[str, list[dict[str, Any]]]:
    """The run's training, validation and test examples, as many as configured; BenchError without training ones."""
    splits = {
        "train": task.load("train", source, config.train_examples),
        "validation": task.load("validation", source, config.validation_examples),
        "test": task.load("test", source, config.test_examples),
    }
    if not splits["train"]:
        raise BenchError(f"task {task.name} has no training examples", "check the data files")
    return splits


def _check_budget(
    config: RunConfig, method_cls: type[PeftMethod], task: Task, budget: Budget | None, options: MethodOptions
) -> int | None:
    """The budget as a parameter count of the model; checked on its weightless skeleton where the method counts
    before calibration (BenchError if no knob fits)."""
    skeleton = models.model_skeleton(config.model, task.model_kind, task.num_labels)
    requested = budget.resolve(skeleton.base_params) if budget else None
    module = method_cls(skeleton.model, options, head_prefixes=skeleton.head_prefixes)
    if module.counts_before_calibration():
        solve_knob(module, requested, config.method)
    return requested


def _run_key(
    config: RunConfig,
    method_cls: type[PeftMethod],
    task: Task,
    recipe: Resolved,
    source: DataSource,
    fingerprint: models.Fingerprint,
) -> str:
    """The content key of the run: its settings, resolved options, data, task, model weights, code and libraries."""
    identity = {
        "schema_version": SCHEMA_VERSION,
        "model": fingerprint.value,
        "config": {
            **config.to_dict(),
            "data_dir": None,
            "options": dataclasses.asdict(recipe.options),
            "optim": dataclasses.asdict(recipe.optim),
        },
        "data": source.files,
        "task": dataclasses.asdict(task),  # a declared task's fields: editing its YAML changes the key
        "code": source_hash(method_cls, type(task), *_run_modules()),
        "libraries": library_versions(),
    }
    return content_key(identity)


def with_prompt_masking(task: Task, mask_prompt: bool) -> Task:
    """`task` training with or without its prompt tokens in the loss; BenchError if it has no prompt to leave in."""
    if hasattr(task, "mask_prompt"):
        return dataclasses.replace(task, mask_prompt=mask_prompt)
    if not mask_prompt:
        raise BenchError(
            f"task {task.name} has no instruction prompt, so mask_prompt=false does not apply",
            "drop --no-mask-prompt (or `mask_prompt: false`) for this task",
        )
    return task


def _run_modules() -> tuple[ModuleType, ...]:
    """This module, bench.run.execute and the modules `execute` imports when it runs: their code, and that of every
    project module they import, is part of every run key. Imported here, once a run is planned past its budget
    check, because they load Lightning; what `execute` imports at its top is reached through it."""
    from bench.run import callbacks, divergence
    from methods import training

    return (sys.modules[__name__], execute, callbacks, divergence, training)
