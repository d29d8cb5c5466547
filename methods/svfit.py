"""SVFit: train only the top singular values of each target matrix (Sun et al., arXiv 2409.05926).

Each target `W = U Σ Vᵀ` (thin SVD in fp32, computed once as calibration and cached on disk) keeps its weight and
gains a frozen delta in the principal subspace: `y = W x + U_r ((s − σ) ⊙ (V_rᵀ x))`. The trainable singular values
`s` start at `σ`, so the model is exactly unchanged at step 0; `σ` and the singular vectors of the narrower side are
frozen buffers (the delta is computed through that side alone, see `SingularValueLinear`). The parameter is the
difference `Δs = s − σ` (zero at init): Adam's steps are the same as on `s`, but AdamW's weight decay pulls `s` back
toward `σ`, the base model, rather than toward 0, which would delete the principal subspace.
The gradient wrt `s_i` is `u_iᵀ G v_i`, the dense weight gradient `G` projected on `u_i v_iᵀ`.

Knob: the rank cap r. Matrix W trains `r_W = min(r, limit_W)` singular values, where `limit_W` depends on `rank_rule`:

- `energy` (default, the paper's rule): `limit_W` = the smallest k with Σ_{i≤k} σ_i² ≥ τ Σ_i σ_i² ([inferred]: energy on
  σ², τ = 0.99). The knob is pinned to max_W limit_W, so the count is fixed: run without a budget (a budget other
  than that count is an unreachable-budget error stating the one reachable count).
- `budget`: `limit_W = min(d_out, d_in)`; the budget solver picks r. The ceiling, every singular value of every
  target, is the largest reachable budget (a budget above it is an error, never faked).

Targets ([inferred], the paper publishes no code): q, v on encoders (the 16× fewer-parameters-than-LoRA claim matches
all singular values of W_q, W_v) and all linear roles on decoders. Buffers cost r_W·min(d_out, d_in) floats per matrix
(one side's singular vectors, see `SingularValueLinear`), at most the adapted weights' own size, except for a kept
spectrum wider than 1e3, which keeps both sides.
Export: `Δs` only; `U`, `V` are recomputed from the base (each term u_i v_iᵀ is invariant to the SVD's sign choices).

Recipes: the paper publishes no code and its hyperparameters were not read, so both the project's defaults and the
"paper" recipe are [inferred]: the energy rule at τ = 0.99 (the paper's rule), q, v targets on encoders and every
linear role on decoders, lr 2e-3 (METHODS.md's suggested 1e-3..5e-3, not from the paper), AdamW (0.9, 0.999), no
weight decay, and the matched LoRA baseline's linear schedule with 6 % warm-up.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import BenchError
from methods.base import MethodOptions, PeftMethod
from methods.lora import DECODER_ROLES, ENCODER_ROLES, default_roles
from methods.recipes import Recipe
from methods.targets import ROLES, find_linears

RANK_RULES = ("energy", "budget")


@dataclass(frozen=True)
class SvfitOptions(MethodOptions):
    targets: tuple[str, ...] | None = None  # roles; None = q,v on encoders, every linear role on decoders
    rank_rule: str = (
        "energy"  # "energy": r_W from τ (fixed count); "budget": top-r per matrix, r solved from the budget
    )
    energy: float = 0.99  # τ, the share of Σσ² the kept singular values must reach (rank_rule=energy)

    def __post_init__(self) -> None:
        if self.rank_rule not in RANK_RULES:
            raise BenchError(f"svfit rank_rule {self.rank_rule!r} is unknown", f"use one of {', '.join(RANK_RULES)}")
        if not 0.0 < self.energy <= 1.0:
            raise BenchError(
                f"svfit energy {self.energy} is outside (0, 1]",
                "pass a share of the spectrum's energy such as energy=0.99",
            )


MAX_ONE_SIDED_CONDITION = 1e3  # σ_1/σ_r above which the one-sided form (it divides by σ_i) loses fp32 digits


class SingularValueLinear(nn.Module):
    """A frozen linear layer plus the trainable top-r singular values `s = σ + Δs`, added as `U_r diag(Δs) V_rᵀ`.

    Since `W V_r = U_r Σ_r`, the update also equals `W V_r diag(s/σ − 1) V_rᵀ` and `U_r diag(s/σ − 1) U_rᵀ W`, so
    one side's singular vectors suffice: `V_r` (side "in", d_in ≤ d_out) rescales the input inside the principal
    subspace before the frozen weight, `U_r` (side "out") rescales the output after it. That halves the buffers and the
    extra multiplies. The one-sided form divides by σ_i, so a kept spectrum wider than MAX_ONE_SIDED_CONDITION (a
    full-rank budget on an ill-conditioned matrix) keeps both bases instead (side "both").
    """

    def __init__(self, base: nn.Linear, u: torch.Tensor, sigma: torch.Tensor, vh: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        if sigma[0] > MAX_ONE_SIDED_CONDITION * sigma[-1]:
            self.side = "both"
        else:
            self.side = "in" if base.in_features <= base.out_features else "out"
        # Copies, not views: a top-r slice of the full factors would keep all of them alive.
        if self.side != "out":
            self.register_buffer("vh", vh.clone(memory_format=torch.contiguous_format))  # r x d_in
        if self.side != "in":
            self.register_buffer("u", u.clone(memory_format=torch.contiguous_format))  # d_out x r
        self.register_buffer("sigma", sigma.clone())
        self.delta = nn.Parameter(torch.zeros_like(sigma))  # Δs = s − σ

    @property
    def s(self) -> torch.Tensor:
        """The trained singular values σ + Δs."""
        return self.sigma + self.delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.side == "in":
            ratio = self.delta / self.sigma
            return self.base(x + ((F.linear(x.to(self.vh.dtype), self.vh) * ratio) @ self.vh).to(x.dtype))
        y = self.base(x)
        if self.side == "out":
            ratio = self.delta / self.sigma
            h = (y if self.base.bias is None else y - self.base.bias).to(self.u.dtype)
            return y + F.linear((h @ self.u) * ratio, self.u).to(y.dtype)
        return y + F.linear(F.linear(x.to(self.vh.dtype), self.vh) * self.delta, self.u).to(y.dtype)

    def delta_weight(self) -> torch.Tensor:
        """`U_r diag(Δs) V_rᵀ` in fp32, in the same form as the forward pass."""
        weight, delta, sigma = self.base.weight.detach().float(), self.delta.detach().float(), self.sigma.float()
        if self.side == "in":
            return (weight @ self.vh.float().T * (delta / sigma)) @ self.vh.float()
        if self.side == "out":
            return (self.u.float() * (delta / sigma)) @ (self.u.float().T @ weight)
        return (self.u.float() * delta) @ self.vh.float()


class SVFit(PeftMethod):
    """Top singular values of each target matrix, trained in the delta form (see the module docstring)."""

    name = "svfit"
    knob_name = "rank"
    display_name = "SVFit"
    color = "tab:purple"
    Options = SvfitOptions
    needs_calibration = True
    default_lr = 2e-3  # [not from the paper] METHODS.md suggests 1e-3..5e-3
    recipes: ClassVar[dict[str, dict[str, Recipe]]] = {
        "paper": dict.fromkeys(
            ("encoder", "decoder"),
            Recipe(
                source="[inferred] no published code or hyperparameters; see the module docstring",
                lr=2e-3,
                options={"rank_rule": "energy", "energy": "0.99"},
            ),
        )
    }

    @property
    def roles(self) -> tuple[str, ...]:
        if self.options.targets:
            return self.options.targets
        return ROLES if default_roles(self.model) == DECODER_ROLES else ENCODER_ROLES

    @cached_property
    def targets(self) -> list[tuple[str, nn.Linear]]:
        return find_linears(self.model, self.roles)

    @cached_property
    def full_ranks(self) -> list[int]:
        return [min(module.weight.shape) for _, module in self.targets]

    def compute_calibration(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Thin fp32 SVD of every target (needs no batches), on one CPU thread: LAPACK's result bits depend on the thread count."""
        state = {}
        with single_thread():
            for name, module in self.targets:
                u, sigma, vh = torch.linalg.svd(module.weight.detach().float(), full_matrices=False)
                state.update({f"{name}.u": u, f"{name}.sigma": sigma, f"{name}.vh": vh})
        return state

    def load_calibration(self, state: dict[str, torch.Tensor]) -> None:
        missing = [name for name, _ in self.targets if f"{name}.sigma" not in state]
        if missing:
            raise RuntimeError(f"svfit calibration lacks the SVD of {missing[:3]}")
        self._factors = state
        # Copies: a cached state is memory-mapped, and one view into it keeps every page read from it resident.
        self.spectra = [state[f"{name}.sigma"].clone() for name, _ in self.targets]

    def calibration_settings(self) -> dict:
        return {
            "targets": list(self.roles),
            "decomposition": "torch.linalg.svd(float32, full_matrices=False)",
            "torch": torch.__version__,
        }

    @cached_property
    def rank_limits(self) -> list[int]:
        """Most singular values each target may train under `rank_rule`."""
        if self.options.rank_rule == "budget":
            return self.full_ranks
        if not hasattr(self, "spectra"):
            raise RuntimeError("svfit needs calibrate() before its ranks are known")
        return [energy_rank(sigma, self.options.energy) for sigma in self.spectra]

    def counts_before_calibration(self) -> bool:
        return self.options.rank_rule == "budget"  # the energy rule reads the spectra

    def knob_bounds(self) -> tuple[int, int]:
        highest = max(self.rank_limits)
        return (highest, highest) if self.options.rank_rule == "energy" else (1, highest)

    def solve_budget(self, target: int) -> int:
        knob = self.knob_bounds()[0]
        if self.options.rank_rule == "energy" and target != self.count_for_knob(knob):
            raise BenchError(
                f"svfit's energy rule (energy={self.options.energy}) fixes its count at {self.count_for_knob(knob):,}, not the budget of {target:,}",
                f"run svfit without a budget, or pass --option rank_rule=budget to solve the rank from the budget (at most {sum(self.full_ranks):,})",
            )
        return super().solve_budget(target)

    def ranks_for_knob(self, knob: int) -> list[int]:
        return [min(knob, limit) for limit in self.rank_limits]

    def count_for_knob(self, knob: int) -> int:
        return sum(self.ranks_for_knob(knob))

    def attach(self, knob: int) -> None:
        if not hasattr(self, "_factors"):
            raise RuntimeError("svfit needs calibrate() before attach()")
        self.model.requires_grad_(False)
        for (name, module), rank in zip(self.targets, self.ranks_for_knob(knob)):
            u, sigma, vh = (self._factors[f"{name}.{part}"] for part in ("u", "sigma", "vh"))
            wrapped = SingularValueLinear(module, u[:, :rank], sigma[:rank], vh[:rank])
            parent, _, child = name.rpartition(".")
            setattr(self.model.get_submodule(parent), child, wrapped)
        del self._factors  # the full factors are no longer needed; only the top-r slices stay as buffers

    def load_selection(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The SVD of the base (data-free, the same bits on the same machine): the saved state holds only `s`."""
        self.load_calibration(self.compute_calibration([]))
        return state

    def merged_model(self) -> nn.Module:
        merged = copy.deepcopy(self.model)
        for name, module in list(merged.named_modules()):
            if isinstance(module, SingularValueLinear):
                weight = module.base.weight
                weight.data = (weight.data.float() + module.delta_weight()).to(weight.dtype)
                parent, _, child = name.rpartition(".")
                setattr(merged.get_submodule(parent), child, module.base)
        return merged

    def describe(self) -> dict:
        ranks = self.ranks_for_knob(self.knob) if self.knob is not None else []
        return {
            "targets": list(self.roles),
            "rank_rule": self.options.rank_rule,
            "energy": self.options.energy if self.options.rank_rule == "energy" else None,
            "energy_definition": "[inferred] cumulative sigma^2 share >= energy",
            "ranks": {name: rank for (name, _), rank in zip(self.targets, ranks)},
            "ceiling": sum(self.full_ranks),
            "form": "delta: W x + U_r(ds * (V_r^T x)) with trainable ds = s - sigma initialised to 0 (weight decay pulls s toward sigma), computed through one side, W(x + V_r((ds/sigma) * V_r^T x)) or its output-side twin, unless sigma_1/sigma_r > 1e3",
            "sides": dict(
                Counter(module.side for module in self.model.modules() if isinstance(module, SingularValueLinear))
            ),
            "default_targets": "[inferred] q,v on encoders; all linear roles on decoders",
        }


def energy_rank(sigma: torch.Tensor, energy: float) -> int:
    """Smallest k whose top-k singular values hold at least `energy` of Σσ²."""
    squares = sigma.double() ** 2
    shares = torch.cumsum(squares, 0) / squares.sum()
    return min(int((shares < energy - 1e-12).sum()) + 1, len(sigma))


@contextmanager
def single_thread() -> Iterator[None]:
    """Run the enclosed CPU work on one thread, then restore the thread count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
