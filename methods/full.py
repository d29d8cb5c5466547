"""Full fine-tuning: every weight trains. The reference point of every comparison.

The project's defaults: lr 5e-5, AdamW (0.9, 0.999), no weight decay, linear schedule with 6 % warm-up. The "paper"
recipe: on encoders RoBERTa's GLUE fine-tuning (Liu et al. 2019, Table 10): lr 2e-5 (of the 1e-5, 2e-5, 3e-5 grid),
betas (0.9, 0.98), weight decay 0.1, linear schedule with 6 % warm-up; on decoders the SMT reference code's full
fine-tuning (the baseline of its tables): lr 9.65e-6, linear schedule with 100 warm-up steps, weight decay 0, betas
(0.9, 0.95) [inferred: the optimiser it builds for its SMT phase].
"""

from __future__ import annotations

import copy
from typing import ClassVar

from torch import nn

from methods.base import PeftMethod
from methods.recipes import Recipe


class FullFineTuning(PeftMethod):
    """All base-model parameters are trainable; the only knob value is 1 ("all")."""

    name = "full"
    knob_name = "all"
    display_name = "Full FT"
    color = "black"
    default_lr = 5e-5
    recipes: ClassVar[dict[str, dict[str, Recipe]]] = {
        "paper": {
            "encoder": Recipe(
                source="RoBERTa paper Table 10 (GLUE fine-tuning)", lr=2e-5, betas=(0.9, 0.98), weight_decay=0.1
            ),
            "decoder": Recipe(
                source="SMT reference code's full fine-tuning (HectorHHZ/Sparse_Matrix_Tuning)",
                lr=9.65e-6,
                betas=(0.9, 0.95),
                warmup_steps=100,
            ),
        }
    }

    def knob_bounds(self) -> tuple[int, int]:
        return (1, 1)

    def count_for_knob(self, knob: int) -> int:
        return sum(p.numel() for p in self.model.parameters() if id(p) not in self._head_ids)

    def attach(self, knob: int) -> None:
        self.model.requires_grad_(True)

    def merged_model(self) -> nn.Module:
        return copy.deepcopy(self.model)
