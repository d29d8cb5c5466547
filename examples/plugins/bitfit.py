"""An example plugin: one method and one task from outside the package (`bench --plugins examples/plugins ...`).

BitFit (Ben Zaken et al., ACL 2022) trains only the bias terms of the backbone (and the task head). Its count is
fixed, so it runs without a budget, like full fine-tuning. Biases whose gradient is identically zero (the attention
key's, see methods.targets) are left frozen and not counted, as for every method here.

The task scores CoLA by accuracy instead of the Matthews correlation: a task is an instance of an existing task
class with other fields, here `tasks.glue.GlueTask`.
"""

from __future__ import annotations

import copy

from torch import nn

from methods.base import PeftMethod
from methods.targets import find_linears, zero_gradient_bias_roles
from tasks import metrics
from tasks.glue import GlueTask


class BitFit(PeftMethod):
    """Bias terms only (BitFit): a fixed count, no budget."""

    name = "bitfit"
    knob_name = "all"
    default_lr = 1e-3

    def _biases(self) -> list[nn.Parameter]:
        dead = {id(linear.bias) for _, linear in find_linears(self.model, zero_gradient_bias_roles(self.model))}
        return [
            parameter
            for name, parameter in self.model.named_parameters()
            if name.endswith(".bias") and id(parameter) not in self._head_ids | dead
        ]

    def knob_bounds(self) -> tuple[int, int]:
        return (1, 1)

    def count_for_knob(self, knob: int) -> int:
        return sum(p.numel() for p in self._biases())

    def attach(self, knob: int) -> None:
        self.model.requires_grad_(False)
        for parameter in self._biases():
            parameter.requires_grad_(True)

    def merged_model(self) -> nn.Module:
        return copy.deepcopy(self.model)


COLA_ACCURACY = GlueTask(
    name="example/cola-accuracy",
    directory="glue/CoLA",
    hub_config="cola",
    text_fields=("sentence",),
    num_labels=2,
    metrics={"accuracy": metrics.accuracy},
)
