"""Trainable-parameter budgets: parse `120k`, `3.3M`, `0.5%` and turn them into an absolute count."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import BenchError

if TYPE_CHECKING:
    from methods.base import PeftMethod

_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
_PATTERN = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>%|[kmb])?\s*$", re.IGNORECASE)
_FIX = "give a positive count such as 120k or 3.3M, or a percentage of the base model above 0% and at most 100%, such as 0.5%"


@dataclass(frozen=True)
class Budget:
    """A requested number of trainable parameters, absolute or as a percentage of the base model."""

    text: str
    count: int | None = None
    percent: float | None = None

    def resolve(self, base_params: int) -> int:
        """The requested count for a base model of `base_params` parameters."""
        if self.count is not None:
            return self.count
        assert self.percent is not None
        return max(1, round(self.percent / 100 * base_params))

    def __str__(self) -> str:
        return self.text


def parse_budget(text: str) -> Budget:
    """Parse a budget string; raises BenchError naming the problem and the accepted forms."""
    match = _PATTERN.match(str(text))
    if match is None:
        raise BenchError(f"malformed budget {text!r}", _FIX)
    number = float(match["number"])
    unit = (match["unit"] or "").lower()
    if unit == "%":
        if not 0 < number <= 100:
            raise BenchError(f"budget {text!r} is outside (0%, 100%]", _FIX)
        return Budget(text=str(text).strip(), percent=number)
    count = round(number * _SUFFIX[unit])
    if count < 1:
        raise BenchError(f"budget {text!r} is less than one parameter", _FIX)
    return Budget(text=str(text).strip(), count=count)


FIXED_KNOBS = {"all": "100%", "none": "none"}  # single-valued knobs: full fine-tuning trains all, zero-shot none


def budget_label(budget: str | None, knob_name: str) -> str:
    """How reports and W&B name a run's budget: "100%" for full fine-tuning (knob "all"), "none" for zero-shot,
    "native" for a method run without a budget at its own count (e.g. SVFit's energy rule), the budget as written
    otherwise."""
    if knob_name in FIXED_KNOBS:
        return FIXED_KNOBS[knob_name]
    return budget or "native"


def solve_knob(module: PeftMethod, requested: int | None, method: str) -> int:
    """The knob for a budget of `requested` parameters (None: the method's single value); BenchError if none fits."""
    if requested is not None:
        return module.solve_budget(requested)
    low, high = module.knob_bounds()
    if low != high:
        raise BenchError(
            f"method {method} needs a budget (its {module.knob_name} ranges over {low}..{high})",
            "pass --budget (bench run) or give it budgets (sweep spec), e.g. 0.5% or 120k",
        )
    return low
