"""Full fine-tuning: every weight trains. The reference point of every comparison."""

from __future__ import annotations

import copy

from torch import nn

from methods.base import PeftMethod


class FullFineTuning(PeftMethod):
    """All base-model parameters are trainable; the only knob value is 1 ("all")."""

    name = "full"
    knob_name = "all"
    default_lr = 5e-5

    def knob_bounds(self) -> tuple[int, int]:
        return (1, 1)

    def count_for_knob(self, knob: int) -> int:
        return sum(p.numel() for p in self.model.parameters() if id(p) not in self._head_ids)

    def attach(self, knob: int) -> None:
        self.model.requires_grad_(True)

    def merged_model(self) -> nn.Module:
        return copy.deepcopy(self.model)
