"""SMT, Sparse Matrix Tuning (He, Li, Jiang, Miller; arXiv 2405.15525): train the top-N b×b blocks of q, k, v in place.

Calibration sums each candidate matrix's loss gradient over the calibration batches and scores every block; the N
best blocks of the whole model become the only trainable parameters. Knob: the number of blocks N, trainable = N·b².

Choices (options; all recorded by `describe`):
- candidates: `roles` (default q, k, v, the paper's final configuration). The MLP (`mlp_roles`, default the gate/up/down
  projections the model has) joins only if `mlp_share` > 0: then round(mlp_share·N) of the N blocks are the best MLP
  blocks and the rest the best attention blocks, two rankings as in the reference code's separate quotas.
- block size b (`block_size`): default the paper's ratio of block to width, 256 on LLaMA-7B's 4096-wide matrices =
  1/16: the largest b ≤ min(256, d/16) dividing every candidate dimension, d the model width (the candidates' smallest
  input dimension). 256 on LLaMA-7B, 24 on MiniLM (384 wide), 32 on SmolLM2 (576 wide, k/v 192). A fixed 256 tile (or
  the largest power of two dividing the dimensions, 128 on MiniLM) would make one block a third of MiniLM's width.
- warm-up (`warmup`): "accumulate" (default) sums gradients over the batches without optimizer steps, in eval mode, so
  the fine-tuned model is the base plus a sparse delta. This deviates from the reference code, whose "full" warm-up
  (also available, AdamW at `warmup_lr`, constant, train mode) fine-tunes every weight first; the warmed-up weights are
  then part of the calibration cache and of `export_state`, since every weight differs from the base.
- score (`score`): "abs_mean", the block's mean |gradient| (paper), or "mean_abs", |mean gradient| (reference code default).
- selection (`selection`): "global" top-N over all blocks of a pool (reference "no_restriction"), or "per-matrix": the
  pool's quota split evenly over its matrices, the remainder to the first ones in module order [inferred reading of
  the reference's "norm_dist"]. Ties go to the lower block index.
- init: the trainable blocks start as copies of W's blocks (reference code) and are written back into W before every
  forward, so the forward is one dense matmul, the frozen entries of W never change and the model equals the base at
  init exactly. The autograd function computes weight gradients for the selected blocks only, from the input column
  slices it saved; no dense weight gradient exists.

Optimiser (both recipes): AdamW over the blocks with betas (0.9, 0.95), no weight decay and a linear schedule with no
warm-up, restarted at selection: the reference's SMT phase (deepspeed/smt: FusedAdam betas (0.9, 0.95), weight decay
0, `smt_lr_warmup_steps = 0`). The accumulate warm-up takes no optimizer step, so the run's step 0 is that restart.
Weight decay, if passed, acts on the block values themselves (they are W's entries), as in full fine-tuning.
- lr, "default" recipe: 1e-4, the reference code's comment that smt_lr = 1e-4 beats the paper's value;
- lr, "paper" recipe: 9.65e-6, the learning rate of every published SMT result (reference scripts' ft_lr = smt_lr),
  with the paper's options (q, k, v candidates, abs_mean score, global selection, which are also the defaults).
  The paper's recipe is for decoders; on encoders the same values are used [inferred: SMT has no GLUE recipe].
"""

from __future__ import annotations

import math
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
    merged_copy,
    roles_present,
    swap_module,
)
from methods.targets import find_linears, role_of

SCORES = ("abs_mean", "mean_abs")
SELECTIONS = ("global", "per-matrix")
WARMUPS = ("accumulate", "full")
MAX_BLOCK = 256  # the paper's tile
WIDTH_PER_BLOCK = 16  # the paper's 4096-wide LLaMA-7B matrices hold 16 tiles of 256 per row


@dataclass(frozen=True)
class SmtOptions(MethodOptions):
    roles: tuple[str, ...] = ("q", "k", "v")
    mlp_roles: tuple[str, ...] = ("gate", "up", "down")  # those the model has; candidates only if mlp_share > 0
    mlp_share: float = 0.0  # fraction of the N blocks taken from the MLP pool
    block_size: int | None = None  # None = the paper's 1/16 of the width, at most 256 (see the module docstring)
    score: str = "abs_mean"
    selection: str = "global"
    warmup: str = "accumulate"
    warmup_lr: float = 9.65e-6  # only for warmup=full (reference ft_lr)

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("score", self.score, SCORES),
            ("selection", self.selection, SELECTIONS),
            ("warmup", self.warmup, WARMUPS),
        ):
            if value not in allowed:
                raise BenchError(f"smt option {field}={value!r} is not known", f"use one of {', '.join(allowed)}")
        if not 0.0 <= self.mlp_share <= 1.0:
            raise BenchError(
                f"smt option mlp_share={self.mlp_share} is outside [0, 1]", "pass a fraction, e.g. mlp_share=0.5"
            )
        if self.block_size is not None and self.block_size < 1:
            raise BenchError(f"smt option block_size={self.block_size} is not positive", "pass e.g. block_size=64")


PAPER = Recipe(
    source="SMT reference code HectorHHZ/Sparse_Matrix_Tuning (deepspeed/smt, run scripts); encoder values [inferred] from the decoder recipe",
    lr=9.65e-6,
    options={"roles": "q,k,v", "score": "abs_mean", "selection": "global"},
    betas=(0.9, 0.95),
    warmup_ratio=0.0,
)


def block_scores(gradient: torch.Tensor, block_size: int, score: str) -> torch.Tensor:
    """One score per b×b block of a (d_out, d_in) gradient: [d_out/b, d_in/b]."""
    d_out, d_in = gradient.shape
    blocks = gradient.reshape(d_out // block_size, block_size, d_in // block_size, block_size)
    return blocks.abs().mean(dim=(1, 3)) if score == "abs_mean" else blocks.mean(dim=(1, 3)).abs()


class _BlockGradLinear(torch.autograd.Function):
    """y = x Wᵀ + b with W already holding the trainable blocks; backward gives dL/dx and dL/d(blocks) only.

    Saves the input column slices of the blocks' column-block indices (`input_blocks`), not the whole input, laid out
    block-major ([column blocks, tokens, b]) so that backward's batched product reads them without a copy, and in the
    autocast dtype under bf16-mixed (the dtype backward multiplies in; half the memory).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        blocks: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        block_rows: torch.Tensor,
        input_blocks: torch.Tensor,
        input_slot: torch.Tensor,
        block_size: int,
    ) -> torch.Tensor:
        ctx.block_size = block_size
        ctx.device, ctx.autocast = x.device.type, autocast_of(x)
        columns = None
        if ctx.needs_input_grad[1]:
            block_major = x.reshape(-1, x.shape[-1] // block_size, block_size).transpose(0, 1)  # a view
            columns = block_major.index_select(0, input_blocks).to(ctx.autocast or x.dtype)  # [columns, tokens, b]
        ctx.save_for_backward(columns, weight, block_rows, input_slot)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        columns, weight, block_rows, input_slot = ctx.saved_tensors
        with autocast_as(ctx.device, ctx.autocast):  # bf16-mixed: both products in bf16, as a dense layer's would be
            grad_x = grad_out @ weight if ctx.needs_input_grad[0] else None
            grad_blocks = None
            if ctx.needs_input_grad[1]:
                b = ctx.block_size
                block_major = grad_out.reshape(-1, grad_out.shape[-1] // b, b).transpose(0, 1)  # a view
                out_rows = block_major.index_select(0, block_rows).to(columns.dtype)  # [K, tokens, b]
                in_columns = columns.index_select(0, input_slot)  # [K, tokens, b]
                grad_blocks = torch.bmm(out_rows.transpose(1, 2), in_columns)  # [K, b, b]
                grad_blocks = grad_blocks.to(weight.dtype)  # the fp32 master blocks' gradient
        return grad_x, grad_blocks, None, None, None, None, None, None


class BlockSparseLinear(nn.Module):
    """An nn.Linear whose selected b×b blocks (`block_rows[k]`, `block_cols[k]`) are the trainable `blocks`."""

    def __init__(self, base: nn.Linear, block_size: int, block_rows: torch.Tensor, block_cols: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.block_size = block_size
        input_blocks, input_slot = torch.unique(block_cols, return_inverse=True)
        self.register_buffer("block_rows", block_rows)
        self.register_buffer("block_cols", block_cols)
        self.register_buffer("input_blocks", input_blocks)
        self.register_buffer("input_slot", input_slot)
        self.blocks = nn.Parameter(self._weight_blocks()[block_rows, :, block_cols, :].clone())

    def _weight_blocks(self) -> torch.Tensor:
        """The weight as [d_out/b, b, d_in/b, b] (a view: writing it writes W)."""
        d_out, d_in, b = self.base.out_features, self.base.in_features, self.block_size
        return self.base.weight.view(d_out // b, b, d_in // b, b)

    def write_blocks(self) -> None:
        with torch.no_grad():
            self._weight_blocks()[self.block_rows, :, self.block_cols, :] = self.blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.write_blocks()
        return _BlockGradLinear.apply(
            x,
            self.blocks,
            self.base.weight,
            self.base.bias,
            self.block_rows,
            self.input_blocks,
            self.input_slot,
            self.block_size,
        )

    def merge_into_base(self) -> nn.Linear:
        self.write_blocks()
        return self.base


class SMT(PeftMethod):
    """Top-N gradient-scored b×b blocks of the candidate matrices, trained in place."""

    name = "smt"
    knob_name = "blocks"
    display_name = "SMT"
    color = "tab:green"
    Options = SmtOptions
    needs_calibration = True
    default_lr = 1e-4
    default_betas = (0.9, 0.95)
    default_warmup_ratio = 0.0
    recipes: ClassVar[dict[str, dict[str, Recipe]]] = {"paper": dict.fromkeys(("encoder", "decoder"), PAPER)}

    # ----- candidates and block size (read from the base model before any wrapping) -----------------------------

    @cached_property
    def pools(self) -> dict[str, list[tuple[str, nn.Linear]]]:
        """Candidate linears by pool: "attention" (`roles`) and, if `mlp_share` > 0, "mlp"."""
        options = self.options
        pools = {"attention": find_linears(self.model, options.roles)} if options.mlp_share < 1 else {}
        if options.mlp_share > 0:
            mlp_roles = roles_present(self.model, options.mlp_roles)
            if not mlp_roles:
                raise BenchError(
                    f"smt mlp_share={options.mlp_share} but the model has none of the MLP roles {list(options.mlp_roles)}",
                    "set mlp_roles or mlp_share=0",
                )
            pools["mlp"] = find_linears(self.model, mlp_roles)
        return pools

    @cached_property
    def candidates(self) -> dict[str, nn.Linear]:
        return {name: linear for linears in self.pools.values() for name, linear in linears}

    @cached_property
    def block_size(self) -> int:
        dims = {d for linear in self.candidates.values() for d in (linear.out_features, linear.in_features)}
        if self.options.block_size is not None:
            bad = sorted(d for d in dims if d % self.options.block_size)
            if bad:
                raise BenchError(
                    f"smt block_size={self.options.block_size} does not divide candidate dimension(s) {bad}",
                    "choose a block size dividing every candidate dimension",
                )
            return self.options.block_size
        width = min(linear.in_features for linear in self.candidates.values())
        common = math.gcd(*dims)
        limit = max(1, min(MAX_BLOCK, width // WIDTH_PER_BLOCK))
        return max(b for b in range(1, limit + 1) if common % b == 0)

    def _blocks_of(self, name: str) -> int:
        linear = self.candidates[name]
        return (linear.out_features // self.block_size) * (linear.in_features // self.block_size)

    def _pool_capacity(self, pool: str) -> int:
        """Most blocks the pool can give under the selection rule."""
        counts = [self._blocks_of(name) for name, _ in self.pools[pool]]
        return sum(counts) if self.options.selection == "global" else len(counts) * min(counts)

    def _quotas(self, n: int) -> dict[str, int]:
        mlp = int(self.options.mlp_share * n + 0.5)
        return {pool: mlp if pool == "mlp" else n - mlp for pool in self.pools}

    # ----- budget ------------------------------------------------------------------------------------------------

    def knob_bounds(self) -> tuple[int, int]:
        capacity = sum(self._pool_capacity(pool) for pool in self.pools)
        low, high = 1, capacity  # feasibility is monotone in N: both quotas are non-decreasing
        while low < high:
            middle = (low + high + 1) // 2
            if all(quota <= self._pool_capacity(pool) for pool, quota in self._quotas(middle).items()):
                low = middle
            else:
                high = middle - 1
        return (1, low)

    def count_for_knob(self, knob: int) -> int:
        return knob * self.block_size**2

    # ----- calibration ---------------------------------------------------------------------------------------------

    def calibration_settings(self) -> dict[str, Any]:
        settings = {
            "candidates": sorted(self.candidates),
            "block_size": self.block_size,
            "score": self.options.score,
            "warmup": self.options.warmup,
        }
        return settings | ({"warmup_lr": self.options.warmup_lr} if self.options.warmup == "full" else {})

    def compute_calibration(self, batches: Any) -> dict[str, torch.Tensor]:
        weights = {name: linear.weight for name, linear in self.candidates.items()}
        optimizer = (
            torch.optim.AdamW(self.model.parameters(), lr=self.options.warmup_lr, weight_decay=0.0)
            if self.options.warmup == "full"
            else None
        )
        gradients = accumulate_gradients(self.model, weights, batches, optimizer)
        state = {
            name: block_scores(gradient, self.block_size, self.options.score) for name, gradient in gradients.items()
        }
        if optimizer is not None:
            state |= {f"warmup.{name}": p.detach().clone() for name, p in self.model.named_parameters()}
        return state

    def load_calibration(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.candidates) - set(state))
        if missing:
            raise BenchError(
                f"smt calibration has no scores for {missing[:3]}", "delete the stale calibration cache file and rerun"
            )
        self.scores = {name: state[name] for name in self.candidates}
        warmed = {name.removeprefix("warmup."): tensor for name, tensor in state.items() if name.startswith("warmup.")}
        if warmed:
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    p.copy_(warmed[name])

    # ----- selection and training ----------------------------------------------------------------------------------

    def select(self, knob: int) -> dict[str, torch.Tensor]:
        """Flat block indices (row-major over the [d_out/b, d_in/b] grid), sorted, for every matrix that gets blocks."""
        if not hasattr(self, "scores"):
            raise BenchError("smt needs its calibration before selecting blocks", "call calibrate() before apply()")
        low, high = self.knob_bounds()
        if not low <= knob <= high:
            raise BenchError(f"smt cannot select {knob} blocks", f"choose {self.knob_name} in {low}..{high}")
        chosen: dict[str, torch.Tensor] = {}
        for pool, quota in self._quotas(knob).items():
            names = [name for name, _ in self.pools[pool]]
            if self.options.selection == "global":
                flat = torch.cat([self.scores[name].flatten() for name in names])
                top = torch.sort(flat, descending=True, stable=True).indices[:quota]
                starts = torch.tensor([0, *(self._blocks_of(name) for name in names)]).cumsum(0)
                picks = {
                    name: top[(top >= starts[i]) & (top < starts[i + 1])] - starts[i] for i, name in enumerate(names)
                }
            else:
                shares = [quota // len(names) + (i < quota % len(names)) for i in range(len(names))]
                picks = {
                    name: torch.sort(self.scores[name].flatten(), descending=True, stable=True).indices[:share]
                    for name, share in zip(names, shares)
                }
            chosen |= {name: indices.sort().values for name, indices in picks.items() if len(indices)}
        return chosen

    def attach(self, knob: int) -> None:
        chosen = self.select(knob)
        self.model.requires_grad_(False)
        for name, indices in chosen.items():
            columns = self.candidates[name].in_features // self.block_size
            swap_module(
                self.model,
                name,
                BlockSparseLinear(self.candidates[name], self.block_size, indices // columns, indices % columns),
            )
        self.blocks_per_role = {}
        for name, indices in chosen.items():
            role = role_of(self.model, name)
            self.blocks_per_role[role] = self.blocks_per_role.get(role, 0) + len(indices)

    def merged_model(self) -> nn.Module:
        return merged_copy(self.model, BlockSparseLinear)

    def export_state(self) -> dict[str, torch.Tensor]:
        """Trained blocks with their (row, column) block indices; plus every weight after a full warm-up."""
        state: dict[str, torch.Tensor] = {}
        for name, module in self.model.named_modules():
            if isinstance(module, BlockSparseLinear):
                state |= {
                    f"{name}.blocks": module.blocks.detach(),
                    f"{name}.block_rows": module.block_rows.int(),
                    f"{name}.block_cols": module.block_cols.int(),
                }
        if self.options.warmup == "full":
            state |= {
                f"warmup.{name}": p.detach()
                for name, p in merged_copy(self.model, BlockSparseLinear).named_parameters()
            }
        heads = {name: p.detach() for name, p in self.model.named_parameters() if id(p) in self._head_ids}
        return state | heads

    def load_selection(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The saved blocks as indicator scores (1 on each saved block), so the selection rule picks exactly them.

        A full warm-up's saved weights become the base first; returns the blocks and head left to load.
        """
        scores = {}
        for name, linear in self.candidates.items():
            scores[name] = torch.zeros(linear.out_features // self.block_size, linear.in_features // self.block_size)
            if f"{name}.block_rows" in state:
                scores[name][state[f"{name}.block_rows"].long(), state[f"{name}.block_cols"].long()] = 1.0
        self.load_calibration(scores | {key: tensor for key, tensor in state.items() if key.startswith("warmup.")})
        return {key: tensor for key, tensor in state.items() if not key.startswith("warmup.")}

    def describe(self) -> dict[str, Any]:
        options = self.options
        return {
            "block_size": self.block_size,
            "candidates": {
                pool: sorted({role_of(self.model, name) for name, _ in linears}) for pool, linears in self.pools.items()
            },
            "mlp_share": options.mlp_share,
            "score": options.score,
            "selection": options.selection,
            "warmup": options.warmup
            if options.warmup == "full"
            else "accumulate (no optimizer steps, eval mode: base + sparse delta)",
            **(
                {"warmup_lr": options.warmup_lr, "warmup_schedule": "constant AdamW, train mode"}
                if options.warmup == "full"
                else {}
            ),
            "init": "copy of W's blocks, trained in place",
            "blocks_per_role": getattr(self, "blocks_per_role", {}),
        }
