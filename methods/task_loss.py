"""The task loss every method trains on, with the vocabulary projection applied only where a label needs it.

A causal language model's loss is the mean next-token cross-entropy over the supervised tokens (labels other than
-100), as transformers' `ForCausalLMLoss` computes it. With the prompt masked only the answer's few tokens are
supervised, yet the model's own forward projects every position of every sequence onto the vocabulary (49,152 words
for SmolLM2). Passing the supervised positions as `logits_to_keep` projects those alone: the same loss and gradients
without the (batch x length x vocabulary) logits and their softmax (`benchmarks/answer_logits.py` measures the step
time saved and the logits' size). Classification and regression heads keep the model's own loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from core.labels import IGNORED


def is_language_modelling(model: nn.Module, batch: dict[str, torch.Tensor]) -> bool:
    """Whether `batch` trains `model`'s language-model head: per-token labels and an output vocabulary layer."""
    return batch["labels"].shape == batch["input_ids"].shape and model.get_output_embeddings() is not None


def task_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], parameters: dict[str, torch.Tensor] | None = None
) -> tuple[torch.Tensor, Any]:
    """The task loss of `batch` and the model's outputs; with `parameters`, computed with those tensors in place of
    the model's own (`torch.func.functional_call`)."""

    def forward(**inputs: Any) -> Any:
        return model(**inputs) if parameters is None else functional_call(model, parameters, (), inputs)

    if not is_language_modelling(model, batch):
        outputs = forward(**batch)
        return outputs.loss, outputs
    targets = batch["labels"][:, 1:]
    supervised = targets != IGNORED
    predicts_supervised = F.pad(supervised, (0, 1), value=False)  # position i predicts token i + 1
    inputs = {name: value for name, value in batch.items() if name != "labels"}
    outputs = forward(**inputs, logits_to_keep=predicts_supervised)
    return F.cross_entropy(outputs.logits.float(), targets[supervised]), outputs
