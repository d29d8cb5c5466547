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


class DensityMeter:
    """MLP activation density over the forwards `model` runs while inside `with DensityMeter(model) as meter:`.

    A forward counts when it gets an `attention_mask` as wide as its activations' token axis: a pass over whole
    sequences (a classifier's batch, a generation's prefill). Cached decoding steps (one new token against a longer
    mask) and forwards without a mask (lm-eval's log-likelihood calls) are not counted. `result()` is the density of
    what was counted, None if nothing was. Activations are read in the precision the forwards ran in.
    """

    def __init__(self, model: nn.Module, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.model = model
        self.kind = density_kind(model)
        self.threshold = threshold
        self.modules = [module for _, module in find_activations(model)]
        if not self.modules:
            raise BenchError(
                f"{model.__class__.__name__} has no MLP activation module to measure",
                "check ACTIVATION_PATTERNS in methods/targets.py",
            )
        self.rows: list[torch.Tensor] = []  # per counted forward: samples x layers
        self._mask: torch.Tensor | None = None
        self._captured: list[torch.Tensor] = []
        self._handles: list[Any] = []

    def __enter__(self) -> DensityMeter:
        self._handles = [
            self.model.register_forward_pre_hook(self._begin, with_kwargs=True),
            *(module.register_forward_hook(self._capture) for module in self.modules),
            self.model.register_forward_hook(self._end),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _begin(self, _module: nn.Module, _args: tuple, kwargs: dict[str, Any]) -> None:
        self._mask = kwargs.get("attention_mask")
        self._captured = []

    def _capture(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        self._captured.append(output.detach())

    def _end(self, _module: nn.Module, _args: tuple, _output: Any) -> None:
        captured, mask = self._captured, self._mask
        self._captured, self._mask = [], None
        if mask is None or mask.dim() != 2 or any(a.shape[1] != mask.shape[1] for a in captured):
            return
        if len(captured) != len(self.modules):
            raise RuntimeError(f"expected {len(self.modules)} activation outputs per forward, got {len(captured)}")
        on = [(a != 0) if self.kind == "exact_zero" else (a.abs() >= self.threshold) for a in captured]
        self.rows.append(torch.stack([per_sample_mean(layer.double(), mask) for layer in on], 1))

    @property
    def samples(self) -> int:
        return sum(len(rows) for rows in self.rows)

    def result(self, percent: bool = True) -> dict[str, Any] | None:
        """Density over the samples counted (percent by default), per layer, and how it was measured."""
        if not self.rows:
            return None
        table = torch.cat(self.rows) * (100 if percent else 1)
        return {
            "density": table.mean(1).mean(0).item(),
            "per_layer": table.mean(0).tolist(),
            "kind": self.kind,
            "activation": self.model.config.hidden_act,
            "threshold": self.threshold if self.kind == "abs_below_threshold" else None,
            "unit": "percent" if percent else "fraction",
            "samples": table.shape[0],
            "layers": table.shape[1],
            "padding": "excluded",
        }


@torch.no_grad()
def activation_density(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    threshold: float = DEFAULT_THRESHOLD,
    percent: bool = True,
) -> dict[str, Any]:
    """Density of `model`'s MLP activations over `batches` (each with input_ids and attention_mask), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with DensityMeter(model, threshold) as meter:
            for batch in batches:
                model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    finally:
        model.train(was_training)
    result = meter.result(percent)
    if result is None:
        raise BenchError("no batches to measure activation density on", "pass at least one evaluation batch")
    return result
