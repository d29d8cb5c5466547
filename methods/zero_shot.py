"""No fine-tuning: the pretrained model scored as it is, the base-model row of LLM-Adapters' and DoRA's tables.

Nothing trains, so the run takes no training step whatever its `max_steps` (the record's `cost.steps` is 0) and its
learning rate is never used. Scores are still per seed in a sweep, and identical across seeds under greedy decoding.
A classification task would score an untrained head, so only tasks without one (decoder tasks) are accepted.
"""

from __future__ import annotations

import copy
from typing import ClassVar

from torch import nn

from core.errors import BenchError
from methods.base import PeftMethod


class ZeroShot(PeftMethod):
    """The base model, frozen; the only knob value is 0 ("none")."""

    name = "zero-shot"
    knob_name = "none"
    display_name = "Zero-shot"
    color = "grey"
    trains: ClassVar[bool] = False

    def knob_bounds(self) -> tuple[int, int]:
        if self.head_prefixes:  # checked when a run is planned, before any weight loads
            raise BenchError(
                "zero-shot would score a new, untrained classification head",
                "use it on a decoder task (commonsense/..., arithmetic/..., glue-lm/...)",
            )
        return (0, 0)

    def count_for_knob(self, knob: int) -> int:
        return 0

    def attach(self, knob: int) -> None:
        self.model.requires_grad_(False)

    def merged_model(self) -> nn.Module:
        return copy.deepcopy(self.model)

    def configure_optimizers(self) -> None:
        return None
