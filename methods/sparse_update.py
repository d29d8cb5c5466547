"""Shared parts of the methods that train a sparse subset of existing weight entries (SMT blocks, row-SFT rows).

- `accumulate_gradients`: the loss gradient of chosen weights summed in fp32 over calibration batches, with no
  other parameter holding a gradient and (unless an optimizer is given) no weight moving;
- `batch_loss`: the task loss of one batch on the model's device, optionally with substituted parameters;
- `roles_present`: the roles of a list that exist for the model type (BERT has no gate projection);
- `swap_module` / `merged_copy`: put a wrapper in place of an nn.Linear, and get back a plain dense model;
- `autocast_of` / `autocast_as`: a custom autograd function's backward runs in the autocast its forward ran in.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable

import torch
from torch import nn

from core.errors import BenchError
from methods.targets import ROLE_PATTERNS, role_regex
from methods.task_loss import task_loss


def autocast_of(x: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype active for `x`'s device (bf16 under `bf16-mixed`), or None when autocast is off."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None


def autocast_as(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device` (as `autocast_of` saw it in the forward), or no autocast for None.

    Autograd runs a custom function's backward outside the forward's autocast; without this, a bf16-mixed step would
    compute the sparse weight gradients and dL/dx in fp32, at fp32 cost."""
    return torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def batch_loss(
    model: nn.Module, batch: dict[str, torch.Tensor], parameters: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The task loss of `batch`; with `parameters`, computed with those tensors in place of the model's own."""
    device = next(model.parameters()).device
    return task_loss(model, {key: value.to(device) for key, value in batch.items()}, parameters)[0]


def accumulate_gradients(
    model: nn.Module,
    weights: dict[str, nn.Parameter],
    batches: Iterable[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, torch.Tensor]:
    """Sum of d(loss)/d(weight) over `batches` for each of `weights`, in fp32.

    Without `optimizer`: the model runs in eval mode (dropout off, so the sums do not depend on dropout draws), only
    `weights` require grad, and each gradient is moved into its fp32 sum as soon as it is produced, so no parameter
    ends up with a `.grad` and the model is unchanged. With `optimizer` (a full fine-tuning warm-up): the model runs
    in train mode, the optimizer's parameters require grad, and it steps after every batch.
    """
    training, flags = model.training, {id(p): p.requires_grad for p in model.parameters()}
    learning = {id(p) for group in optimizer.param_groups for p in group["params"]} if optimizer else set()
    wanted = {id(p) for p in weights.values()} | learning
    sums = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in weights.items()}

    def take(total: torch.Tensor, parameter: nn.Parameter) -> None:
        total.add_(parameter.grad)
        if optimizer is None:
            parameter.grad = None

    hooks = [
        p.register_post_accumulate_grad_hook(lambda p, total=sums[name]: take(total, p)) for name, p in weights.items()
    ]
    seen = 0
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in wanted)
        model.train(optimizer is not None)
        for batch in batches:
            batch_loss(model, batch).backward()
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            seen += 1
    finally:
        for hook in hooks:
            hook.remove()
        for p in model.parameters():
            p.requires_grad_(flags[id(p)])
        model.train(training)
    if seen == 0:
        raise BenchError(
            "calibration received no batches", "pass at least one calibration batch (--calibration-batches)"
        )
    return sums


def roles_present(model: nn.Module, roles: Iterable[str]) -> tuple[str, ...]:
    """The subset of `roles` that exist for `model`'s type; BenchError if the type has no role table."""
    table = ROLE_PATTERNS.get(getattr(model.config, "model_type", None))
    if table is None:
        role_regex(model, tuple(roles))  # raises the error naming the unknown model type
    return tuple(role for role in roles if role in table)


def swap_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called `name` by `new`."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def merged_copy(model: nn.Module, wrapper_type: type[nn.Module]) -> nn.Module:
    """A deep copy of `model` with every `wrapper_type` module replaced by its `merge_into_base()` plain nn.Linear."""
    merged = copy.deepcopy(model)
    for name, module in [(n, m) for n, m in merged.named_modules() if isinstance(m, wrapper_type)]:
        swap_module(merged, name, module.merge_into_base())
    return merged
