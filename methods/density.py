"""Activation density of the MLP activations at evaluation, for any model (DEFT's measure, METHODS.md §4.3).

Per sample and layer: the share of the activation outputs (real tokens × units; padding tokens excluded through the
attention mask) that are "on", averaged over layers, then over samples, reported ×100 by default.
"On" depends on the activation, and the result says which kind was measured:

- `exact_zero` for ReLU/GELU models (BERT, RoBERTa): `a != 0`, as DEFT's own code counts (`torch.count_nonzero`);
- `abs_below_threshold` for SiLU models (LLaMA), whose outputs are essentially never exactly zero: `|a| >= threshold`.
  [inferred] threshold default 1e-2, the range where DEFT's surrogate a²/(a²+ε) (ε = 1e-7) still pushes activations
  to zero (its gradient is 0.2 at |a| = 1e-2 and falls off quickly above).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from core.errors import BenchError
from methods.targets import find_activations

EXACT_ZERO_ACTIVATIONS = frozenset({"relu", "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh"})
THRESHOLD_ACTIVATIONS = frozenset({"silu", "swish"})
DEFAULT_THRESHOLD = 1e-2


def per_sample_mean(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` (batch × tokens × units) over each sample's real tokens and all units: shape (batch,)."""
    mask = attention_mask.to(values.dtype)
    tokens = mask.sum(1)
    if bool((tokens == 0).any()):
        raise BenchError(
            "a batch holds a sample without any real token", "drop empty examples before measuring density"
        )
    return (values.sum(-1) * mask).sum(1) / (tokens * values.shape[-1])


def density_kind(model: nn.Module) -> str:
    """`exact_zero` or `abs_below_threshold`, from the model's MLP activation function."""
    activation = getattr(model.config, "hidden_act", None)
    if activation in EXACT_ZERO_ACTIVATIONS:
        return "exact_zero"
    if activation in THRESHOLD_ACTIVATIONS:
        return "abs_below_threshold"
    raise BenchError(
        f"no density rule for activation {activation!r}",
        "add it to EXACT_ZERO_ACTIVATIONS or THRESHOLD_ACTIVATIONS in methods/density.py",
    )


@torch.no_grad()
def activation_density(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    threshold: float = DEFAULT_THRESHOLD,
    percent: bool = True,
) -> dict[str, Any]:
    """Density of `model`'s MLP activations over `batches` (each with input_ids and attention_mask)."""
    kind = density_kind(model)
    modules = find_activations(model)
    if not modules:
        raise BenchError(
            f"{model.__class__.__name__} has no MLP activation module to measure",
            "check ACTIVATION_PATTERNS in methods/targets.py",
        )
    captured: list[torch.Tensor] = []
    handles = [
        module.register_forward_hook(lambda _module, _inputs, output: captured.append(output)) for _, module in modules
    ]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = []  # samples x layers
    try:
        for batch in batches:
            mask = batch["attention_mask"].to(device)
            captured.clear()
            model(input_ids=batch["input_ids"].to(device), attention_mask=mask)
            if len(captured) != len(modules):
                raise RuntimeError(f"expected {len(modules)} activation outputs per forward, got {len(captured)}")
            on = [(a != 0) if kind == "exact_zero" else (a.abs() >= threshold) for a in captured]
            rows.append(torch.stack([per_sample_mean(layer.double(), mask) for layer in on], 1))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not rows:
        raise BenchError("no batches to measure activation density on", "pass at least one evaluation batch")
    table = torch.cat(rows) * (100 if percent else 1)
    return {
        "density": table.mean(1).mean(0).item(),
        "per_layer": table.mean(0).tolist(),
        "kind": kind,
        "activation": model.config.hidden_act,
        "threshold": threshold if kind == "abs_below_threshold" else None,
        "unit": "percent" if percent else "fraction",
        "samples": table.shape[0],
        "layers": table.shape[1],
        "padding": "excluded",
    }
