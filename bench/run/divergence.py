"""Stop a run at its first non-finite loss or gradient: a diverged run is a failure with a cause, never a result."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch


class Diverged(RuntimeError):
    """Training produced a non-finite `quantity` at training `step` (1-based; None for an evaluation metric)."""

    def __init__(self, step: int | None, quantity: str, value: float) -> None:
        super().__init__(f"{quantity} is {value} at step {step}" if step is not None else f"{quantity} is {value}")
        self.step = step
        self.quantity = quantity
        self.value = value

    def cause(self) -> dict[str, Any]:
        """What the record stores under `divergence`."""
        return {"step": self.step, "quantity": self.quantity, "value": str(self.value)}


class DivergenceGuard(L.Callback):
    """Raise `Diverged` at the first non-finite training loss (before its backward pass) or gradient (before the
    optimizer step), so not one more step runs on a broken model.

    Under DDP/FSDP every rank decides on every rank's losses and gradients (a rank's own batch, an FSDP shard), so all
    ranks stop at the same step instead of one waiting for the others in a collective."""

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        losses = trainer.strategy.all_gather(loss.detach().float()).flatten()
        if not torch.isfinite(losses).all():
            raise Diverged(trainer.global_step + 1, "training loss", losses[~torch.isfinite(losses)][0].item())

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        named = [(name, p.grad) for name, p in pl_module.named_parameters() if p.grad is not None]
        finite = not named or bool(
            torch.isfinite(torch.stack([grad.detach().float().sum() for _, grad in named])).all()
        )
        if trainer.strategy.reduce_boolean_decision(finite, all=True):  # every rank's verdict, one sync per step
            return
        for name, grad in named:  # a sum can overflow where no element does: name the first tensor that holds one
            if not torch.isfinite(grad).all():
                raise Diverged(
                    trainer.global_step + 1, f"gradient of {name}", grad[~torch.isfinite(grad)].flatten()[0].item()
                )
        raise Diverged(trainer.global_step + 1, "gradient on another rank", math.nan)


def check_metrics(metrics: dict[str, dict[str, Any]]) -> None:
    """Raise `Diverged` for the first non-finite evaluation metric (`{split: {name: value}}`)."""
    for split, values in metrics.items():
        for name, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise Diverged(None, f"{split} metric {name}", value)
