"""row-SFT ("PruFT", Li & Bhaskara, arXiv 2502.11439): train a dense delta on the r most important rows of each linear.

Each eligible layer's output rows (neurons) are scored with a structured-pruning importance before training; the top r
rows R get a trainable ΔW_R (r × d_in). Before every forward the rows W_R⁰ + ΔW_R are written into W, so the layer is
one dense matmul, and a custom backward computes dL/dx and the r rows' gradient only: no dense weight gradient exists
and the other rows of W are never written.
Knob: r rows per layer; trainable = Σ_layers r·d_in, plus r per layer with a trainable bias (Δb_R, `train_bias`,
default on as in the reference code). A bias whose gradient is identically zero is never trained nor counted: the
key projection's on BERT/RoBERTa (`methods.targets.zero_gradient_bias_roles`), whose Δb_R the reference code would
train without effect.

Choices (options; all recorded by `describe`):
- eligible layers (`targets`): default every linear role of the model (q, k, v, o, up, down, and gate on LLaMA), as the
  reference README's runs (`--finetune_attn_as_linear`); the task head and LM head never.
- importance (`importance`), each normalised by its layer mean as in the reference:
  "l2" s_i = Σ_j W_ij² (no data); "taylor" s_i = Σ_j |W_ij G_ij| with G the loss gradient summed over the calibration
  batches (eval mode); "zo-taylor" (default, the README's method command) the same with G an SPSA estimate from forward
  passes only: the batches are split into `zo_estimates` consecutive chunks (README: 2), each giving
  (L(θ+εz) − L(θ−εz)) / 2ε · z with ε = `zo_epsilon` (1e-3) and z ~ N(0, I) drawn per layer from a generator seeded by
  (`zo_seed`, chunk, layer), so z is regenerated instead of stored.
- ranking (`ranking`): "per-layer" top-r (reference default), or "global": the r·L best rows of all L layers against one
  threshold, so r is the average rows per layer and the count is the sum of d_in (+1) over the chosen rows.
- init (`init`): "zero" (default, the model equals the base at init) or "kaiming" (reference code: kaiming-uniform
  a=√5 on ΔW_R, Δb_R zero).

The project's defaults: zero init, lr 1e-4 (the reference runs' AdamW learning rate) with the shared linear schedule
and 6 % warm-up. The "paper" recipe (CenjhihLi/sparsity_finetuning README command and finetune script defaults):
importance zo-taylor with `--n_estimate 2`, per-layer top-r, kaiming init, every linear role; AdamW lr 1e-4, weight
decay 0, torch's betas (0.9, 0.999); `StepLR(gamma=0.85)` stepped once per epoch over 3 epochs, no warm-up (here:
three equal parts of the run). The same values on encoders and decoders ([inferred]: the repository's GLUE scripts
were not read).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import BenchError
from methods.base import MethodOptions, PeftMethod
from methods.recipes import Recipe
from methods.sparse_update import (
    accumulate_gradients,
    autocast_as,
    autocast_of,
    batch_loss,
    merged_copy,
    roles_present,
    swap_module,
)
from methods.targets import ROLES, find_linears, role_of, zero_gradient_bias_roles

IMPORTANCES = ("l2", "taylor", "zo-taylor")
RANKINGS = ("per-layer", "global")
INITS = ("zero", "kaiming")
PAPER = Recipe(
    source="CenjhihLi/sparsity_finetuning README command and finetune defaults; encoder values [inferred] from them",
    lr=1e-4,
    options={"importance": "zo-taylor", "zo_estimates": "2", "ranking": "per-layer", "init": "kaiming"},
    warmup_ratio=0.0,
    schedule="step",
)


@dataclass(frozen=True)
class RowSftOptions(MethodOptions):
    targets: tuple[str, ...] | None = None  # roles; None = every linear role of the model
    importance: str = "zo-taylor"
    ranking: str = "per-layer"
    init: str = "zero"
    train_bias: bool = True  # a Δb_R on layers that have a bias
    zo_estimates: int = 2
    zo_epsilon: float = 1e-3
    zo_seed: int = 0

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("importance", self.importance, IMPORTANCES),
            ("ranking", self.ranking, RANKINGS),
            ("init", self.init, INITS),
        ):
            if value not in allowed:
                raise BenchError(f"row-sft option {field}={value!r} is not known", f"use one of {', '.join(allowed)}")
        if self.zo_estimates < 1 or self.zo_epsilon <= 0:
            raise BenchError(
                f"row-sft needs zo_estimates >= 1 and zo_epsilon > 0 (got {self.zo_estimates}, {self.zo_epsilon})",
                "pass e.g. zo_estimates=2 zo_epsilon=1e-3",
            )


class _RowGradLinear(torch.autograd.Function):
    """y = x Wᵀ + b with W's rows `rows` already holding base + ΔW_R; backward gives dL/dx, dL/dΔW_R and dL/dΔb_R only."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        delta: torch.Tensor,
        delta_bias: torch.Tensor | None,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        rows: torch.Tensor,
    ) -> torch.Tensor:
        ctx.device, ctx.autocast = x.device.type, autocast_of(x)
        saved = x.to(ctx.autocast or x.dtype) if ctx.needs_input_grad[1] else None  # the dtype backward multiplies in
        ctx.save_for_backward(saved, weight, rows)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, rows = ctx.saved_tensors
        with autocast_as(ctx.device, ctx.autocast):  # bf16-mixed: the products in bf16, as a dense layer's would be
            grad_x = grad_out @ weight if ctx.needs_input_grad[0] else None
            out_rows = grad_out.reshape(-1, grad_out.shape[-1]).index_select(1, rows)  # [tokens, r]
            grad_delta = out_rows.T @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
        # the fp32 master parameters' gradients; the bias sum accumulates in fp32
        grad_delta = grad_delta.to(weight.dtype) if grad_delta is not None else None
        grad_delta_bias = out_rows.to(weight.dtype).sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_delta, grad_delta_bias, None, None, None


class RowDeltaLinear(nn.Module):
    """An nn.Linear whose output rows `rows` train a dense delta: W_R = W_R⁰ + ΔW_R (and b_R = b_R⁰ + Δb_R).

    The rows are written into W before every forward, so the forward is one dense matmul and backward one matmul for
    dL/dx plus the r rows' gradient; the other rows of W are never written.
    """

    def __init__(self, base: nn.Linear, rows: torch.Tensor, init: str, train_bias: bool) -> None:
        super().__init__()
        self.base = base
        weight = base.weight
        self.register_buffer("rows", rows)
        self.register_buffer("base_rows", weight.detach()[rows].clone())
        self.delta = nn.Parameter(torch.zeros(len(rows), base.in_features, dtype=weight.dtype, device=weight.device))
        if init == "kaiming":
            nn.init.kaiming_uniform_(self.delta, a=math.sqrt(5))
        self.delta_bias = None
        if train_bias and base.bias is not None:
            self.register_buffer("base_bias_rows", base.bias.detach()[rows].clone())
            self.delta_bias = nn.Parameter(torch.zeros(len(rows), dtype=weight.dtype, device=weight.device))

    def write_rows(self) -> None:
        with torch.no_grad():
            self.base.weight.index_copy_(0, self.rows, self.base_rows + self.delta)
            if self.delta_bias is not None:
                self.base.bias.index_copy_(0, self.rows, self.base_bias_rows + self.delta_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.write_rows()
        return _RowGradLinear.apply(x, self.delta, self.delta_bias, self.base.weight, self.base.bias, self.rows)

    def merge_into_base(self) -> nn.Linear:
        self.write_rows()
        return self.base


class RowSFT(PeftMethod):
    """A dense trainable delta on the r most important output rows of every eligible linear."""

    name = "row-sft"
    knob_name = "rows"
    display_name = "row-SFT"
    color = "tab:red"
    Options = RowSftOptions
    needs_calibration = True
    default_lr = 1e-4
    recipes: ClassVar[dict[str, dict[str, Recipe]]] = {"paper": dict.fromkeys(("encoder", "decoder"), PAPER)}

    @cached_property
    def layers(self) -> dict[str, nn.Linear]:
        """Eligible linears by name, read from the base model before any wrapping."""
        roles = self.options.targets or roles_present(self.model, ROLES)
        return dict(find_linears(self.model, roles))

    @cached_property
    def biased_layers(self) -> set[str]:
        """Eligible layers that train a Δb_R: those with a bias whose gradient is not identically zero."""
        frozen = zero_gradient_bias_roles(self.model)
        return {
            name
            for name, linear in self.layers.items()
            if self.options.train_bias and linear.bias is not None and role_of(self.model, name) not in frozen
        }

    def _row_size(self, name: str) -> int:
        """Trainable parameters per selected row of layer `name`."""
        return self.layers[name].in_features + (name in self.biased_layers)

    # ----- budget ------------------------------------------------------------------------------------------------

    def counts_before_calibration(self) -> bool:
        return self.options.ranking == "per-layer"  # a global ranking's count depends on which layers win rows

    def knob_bounds(self) -> tuple[int, int]:
        if self.options.ranking == "global":
            return (1, sum(linear.out_features for linear in self.layers.values()) // len(self.layers))
        return (1, min(linear.out_features for linear in self.layers.values()))

    def count_for_knob(self, knob: int) -> int:
        if self.options.ranking == "global":
            return sum(len(rows) * self._row_size(name) for name, rows in self.select(knob).items())
        return sum(knob * self._row_size(name) for name in self.layers)

    # ----- calibration ---------------------------------------------------------------------------------------------

    def calibration_settings(self) -> dict[str, Any]:
        settings = {"layers": sorted(self.layers), "importance": self.options.importance}
        if self.options.importance == "zo-taylor":
            settings |= {
                "zo_estimates": self.options.zo_estimates,
                "zo_epsilon": self.options.zo_epsilon,
                "zo_seed": self.options.zo_seed,
            }
        return settings

    def compute_calibration(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        weights = {name: linear.weight for name, linear in self.layers.items()}
        if self.options.importance == "l2":
            scores = {name: w.detach().float().pow(2).sum(1) for name, w in weights.items()}
        elif self.options.importance == "taylor":
            gradients = accumulate_gradients(self.model, weights, batches)
            scores = {name: (w.detach().float() * gradients[name]).abs().sum(1) for name, w in weights.items()}
        else:
            scores = self._zo_taylor(weights, list(batches))
        return {name: score / score.mean() for name, score in scores.items()}

    def _direction(self, chunk: int, layer: int, weight: torch.Tensor) -> torch.Tensor:
        """The SPSA direction z for one chunk and layer, regenerated from its seed."""
        generator = torch.Generator(device=weight.device).manual_seed(
            (self.options.zo_seed * 1_000_003 + chunk) * 1_000_003 + layer
        )
        return torch.randn(weight.shape, generator=generator, device=weight.device, dtype=torch.float32)

    def _zo_taylor(
        self, weights: dict[str, nn.Parameter], batches: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Σ_j |W_ij ĝ_ij| with ĝ the SPSA gradient estimate averaged over the chunks (forward passes only)."""
        n, epsilon = self.options.zo_estimates, self.options.zo_epsilon
        if len(batches) < n:
            raise BenchError(
                f"row-sft zo-taylor needs at least zo_estimates={n} calibration batches, got {len(batches)}",
                "raise --calibration-batches or lower zo_estimates",
            )
        chunks = [batches[k * len(batches) // n : (k + 1) * len(batches) // n] for k in range(n)]
        training = self.model.training
        self.model.eval()
        coefficients = []
        try:
            with torch.no_grad():
                for k, chunk in enumerate(chunks):
                    losses = []
                    for sign in (1.0, -1.0):
                        perturbed = {
                            f"{name}.weight": w + (sign * epsilon * self._direction(k, i, w)).to(w.dtype)
                            for i, (name, w) in enumerate(weights.items())
                        }
                        losses.append(
                            sum(float(batch_loss(self.model, batch, perturbed)) for batch in chunk) / len(chunk)
                        )
                        del perturbed
                    coefficients.append((losses[0] - losses[1]) / (2 * epsilon))
        finally:
            self.model.train(training)
        scores = {}
        for i, (name, w) in enumerate(weights.items()):
            estimate = sum(c * self._direction(k, i, w) for k, c in enumerate(coefficients)) / n
            scores[name] = (w.detach().float() * estimate).abs().sum(1)
        return scores

    def load_calibration(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.layers) - set(state))
        if missing:
            raise BenchError(
                f"row-sft calibration has no scores for {missing[:3]}",
                "delete the stale calibration cache file and rerun",
            )
        self.scores = {name: state[name] for name in self.layers}

    # ----- selection and training ----------------------------------------------------------------------------------

    def select(self, knob: int) -> dict[str, torch.Tensor]:
        """Sorted row indices for every layer that gets rows (ties go to the lower index)."""
        if not hasattr(self, "scores"):
            raise BenchError("row-sft needs its calibration before selecting rows", "call calibrate() before apply()")
        low, high = self.knob_bounds()
        if not low <= knob <= high:
            raise BenchError(
                f"row-sft cannot select {knob} rows per layer", f"choose {self.knob_name} in {low}..{high}"
            )
        names = list(self.layers)
        if self.options.ranking == "per-layer":
            return {
                name: torch.sort(self.scores[name], descending=True, stable=True).indices[:knob].sort().values
                for name in names
            }
        flat = torch.cat([self.scores[name] for name in names])
        top = torch.sort(flat, descending=True, stable=True).indices[: knob * len(names)]
        starts = torch.tensor([0, *(self.layers[name].out_features for name in names)]).cumsum(0)
        picks = {
            name: (top[(top >= starts[i]) & (top < starts[i + 1])] - starts[i]).sort().values
            for i, name in enumerate(names)
        }
        return {name: rows for name, rows in picks.items() if len(rows)}

    def attach(self, knob: int) -> None:
        chosen = self.select(knob)
        self.model.requires_grad_(False)
        for name, rows in chosen.items():
            swap_module(
                self.model, name, RowDeltaLinear(self.layers[name], rows, self.options.init, name in self.biased_layers)
            )
        self.rows_per_role = {}
        for name, rows in chosen.items():
            role = role_of(self.model, name)
            self.rows_per_role[role] = self.rows_per_role.get(role, 0) + len(rows)

    def merged_model(self) -> nn.Module:
        return merged_copy(self.model, RowDeltaLinear)

    def export_state(self) -> dict[str, torch.Tensor]:
        """The deltas with their row indices, plus the task head."""
        state: dict[str, torch.Tensor] = {}
        for name, module in self.model.named_modules():
            if isinstance(module, RowDeltaLinear):
                state |= {f"{name}.delta": module.delta.detach(), f"{name}.rows": module.rows.int()}
                if module.delta_bias is not None:
                    state[f"{name}.delta_bias"] = module.delta_bias.detach()
        return state | {name: p.detach() for name, p in self.model.named_parameters() if id(p) in self._head_ids}

    def load_selection(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The saved rows as indicator scores (1 on each saved row), so the ranking picks exactly them."""
        scores = {}
        for name, linear in self.layers.items():
            scores[name] = torch.zeros(linear.out_features)
            if f"{name}.rows" in state:
                scores[name][state[f"{name}.rows"].long()] = 1.0
        self.load_calibration(scores)
        return state

    def describe(self) -> dict[str, Any]:
        options = self.options
        return {
            "targets": sorted({role_of(self.model, name) for name in self.layers}),
            "importance": options.importance,
            **(
                {"zo_estimates": options.zo_estimates, "zo_epsilon": options.zo_epsilon, "zo_seed": options.zo_seed}
                if options.importance == "zo-taylor"
                else {}
            ),
            "importance_normalisation": "divided by the layer mean",
            "ranking": options.ranking,
            "init": "zero (identity at init)"
            if options.init == "zero"
            else "kaiming-uniform a=sqrt(5), bias delta zero",
            "bias_delta": options.train_bias,
            "bias_delta_never_on": list(
                zero_gradient_bias_roles(self.model)
            ),  # roles whose bias gradient is identically zero
            "calibration_mode": "eval (dropout off)",
            "rows_per_role": getattr(self, "rows_per_role", {}),
        }
