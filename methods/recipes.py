"""Named recipes: a method's hyperparameters as one choice, `--recipe` on `bench run` and `recipe:` in a sweep spec.

- "default": the project's own settings (each method's `default_lr`, `default_betas`, `default_warmup_ratio` and the
  defaults of its options), tuned for the suite's short runs;
- "paper": the method's published recipe (paper table or reference code, cited in the method's docstring) for the
  task's protocol: "encoder" for sequence classification (GLUE), "decoder" for generation (commonsense, arithmetic).

A recipe sets the learning rate, AdamW betas and weight decay, the schedule and its warm-up, and method options
(alpha, dropout, targets, ...). Explicit settings win: `--lr`, `--weight-decay`, `--warmup-ratio` and
`--option key=value` replace what the recipe set. `resolve` returns the effective options and optimiser settings,
and what to record: the recipe's name, family, source and values, and which of them were overridden.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from core.errors import BenchError
from methods.base import SCHEDULES, MethodOptions, OptimConfig, PeftMethod

DEFAULT = "default"
FAMILIES = {"sequence-classification": "encoder", "causal-lm": "decoder"}  # task model kind -> recipe family


@dataclass(frozen=True)
class Recipe:
    """One method's hyperparameters for one model family; `source` names where they come from."""

    source: str
    lr: float
    options: dict[str, str] = field(default_factory=dict)  # method options as `key=value` strings, like --option
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    warmup_steps: int | None = None  # a fixed step count (replaces warmup_ratio)
    schedule: str = "linear"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"recipe schedule {self.schedule!r} is not one of {SCHEDULES}")


@dataclass(frozen=True)
class Resolved:
    """A recipe applied to one run: effective options and optimiser, and the record of how they were set."""

    options: MethodOptions
    optim: OptimConfig
    record: dict[str, Any]


def recipe_names(method_cls: type[PeftMethod]) -> list[str]:
    return [DEFAULT, *method_cls.recipes]


def check_recipe(method_cls: type[PeftMethod], name: str) -> None:
    """BenchError unless `method_cls` has a recipe called `name`."""
    if name not in recipe_names(method_cls):
        raise BenchError(
            f"method {method_cls.name!r} has no recipe {name!r}", f"use one of: {', '.join(recipe_names(method_cls))}"
        )


def find_recipe(method_cls: type[PeftMethod], name: str, model_kind: str) -> Recipe:
    """The recipe `name` of `method_cls` for the family of a task whose model kind is `model_kind`."""
    check_recipe(method_cls, name)
    family = FAMILIES[model_kind]
    if name == DEFAULT:
        return Recipe(
            source="the project's defaults (see the method's docstring)",
            lr=method_cls.default_lr,
            betas=method_cls.default_betas,
            warmup_ratio=method_cls.default_warmup_ratio,
        )
    return method_cls.recipes[name][family]


def resolve(
    method_cls: type[PeftMethod],
    name: str,
    model_kind: str,
    options: dict[str, str],
    max_steps: int,
    lr: float | None = None,
    weight_decay: float | None = None,
    warmup_ratio: float | None = None,
) -> Resolved:
    """The recipe's values with the explicit settings (`options`, and `lr` etc. when not None) on top."""
    recipe = find_recipe(method_cls, name, model_kind)
    warmup_steps = None if warmup_ratio is not None else recipe.warmup_steps
    optim = OptimConfig(
        lr=recipe.lr if lr is None else lr,
        weight_decay=recipe.weight_decay if weight_decay is None else weight_decay,
        warmup_ratio=recipe.warmup_ratio if warmup_ratio is None else warmup_ratio,
        warmup_steps=warmup_steps,
        betas=recipe.betas,
        max_steps=max_steps,
        schedule=recipe.schedule,
    )
    if optim.schedule == "step" and warmup_ratio:
        raise BenchError(
            f"recipe {name!r} of {method_cls.name} uses a step schedule, which has no warm-up",
            "drop --warmup-ratio or choose --recipe default",
        )
    if warmup_steps is not None and warmup_steps >= max_steps:
        raise BenchError(
            f"recipe {name!r} of {method_cls.name} warms up for {warmup_steps} steps, the whole {max_steps}-step run",
            f"raise --max-steps above {warmup_steps} or pass --warmup-ratio",
        )
    values: dict[str, Any] = {
        "lr": recipe.lr,
        "betas": list(recipe.betas),
        "weight_decay": recipe.weight_decay,
        "schedule": recipe.schedule,
    }
    values |= (
        {"warmup_steps": recipe.warmup_steps}
        if recipe.warmup_steps is not None
        else {"warmup_ratio": recipe.warmup_ratio}
    )
    explicit = {"lr": lr, "weight_decay": weight_decay, "warmup_ratio": warmup_ratio}
    overridden = sorted(
        [key for key, value in explicit.items() if value is not None]
        + [f"options.{key}" for key in options if key in recipe.options]
    )
    return Resolved(
        options=method_cls.parse_options({**recipe.options, **options}),
        optim=optim,
        record={
            "name": name,
            "family": FAMILIES[model_kind],
            "source": recipe.source,
            "values": {**values, "options": dict(recipe.options)},
            "overridden": overridden,
            "optimizer": {
                "name": "AdamW",
                **dataclasses.asdict(optim),
                "betas": list(optim.betas),
                "num_warmup_steps": optim.num_warmup_steps,
            },
        },
    )
