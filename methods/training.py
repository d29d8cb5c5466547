"""The LightningModule that trains a fine-tuning method: `Trainer.fit(Training(method))`.

Methods themselves are plain torch modules (methods/base.py), so choosing and checking a budget never imports
Lightning; this wrapper adds what Lightning needs to train one: the training step with its logged losses and
learning rate, the method's optimizer and schedule, and train mode for every module.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L
import torch

from methods.base import PeftMethod


class Training(L.LightningModule):
    """Trains `method` on its own losses (`PeftMethod.training_losses`) with its own optimizer and schedule."""

    strict_loading = False  # a checkpoint's weights are what the method trains (on_save_checkpoint), not the base

    def __init__(self, method: PeftMethod) -> None:
        super().__init__()
        self.method = method
        self.save_hyperparameters(
            {
                "method": method.name,
                "options": dataclasses.asdict(method.options),
                "optim": dataclasses.asdict(method.optim),
            }
        )

    def on_train_start(self) -> None:
        """Train with every module in train mode (dropout on), as the papers do: `from_pretrained` returns a model in
        eval mode and Lightning keeps each module's mode, so without this the backbone's dropout would stay off."""
        self.train()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = self.method.training_losses(batch)
        batch_size = batch["input_ids"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=batch_size)
        optimizers = self._trainer.optimizers if self._trainer is not None else []  # a step may run without a Trainer
        groups = [group for optimizer in optimizers for group in optimizer.param_groups]
        if groups:  # a method with nothing to train (the step-cost floor) has none
            self.log("train/lr", groups[0]["lr"], batch_size=batch_size)
        self.log("step", float(self.global_step + 1))  # the loggers' step: optimizer steps taken once this one is
        return losses["loss"]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep what the method trains and its selection (`export_state`), not the frozen base model's weights."""
        checkpoint["state_dict"] = {}
        checkpoint["method_state"] = self.method.export_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Load the trained tensors; `load_trained` refuses a selection other than the one this run calibrated."""
        self.method.load_trained(checkpoint["method_state"])

    def configure_optimizers(self) -> dict[str, Any] | None:
        return self.method.configure_optimizers()

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip to the method's `max_grad_norm` (global norm over the trainable parameters), whatever the Trainer says.
        Under FSDP each rank holds a shard of every gradient, so the sharded model computes the global norm itself."""
        from torch.distributed.fsdp import FullyShardedDataParallel

        max_norm = self.method.optim.max_grad_norm
        if max_norm is None:
            return
        if isinstance(self.trainer.model, FullyShardedDataParallel):
            self.trainer.model.clip_grad_norm_(max_norm)
        else:
            self.clip_gradients(optimizer, gradient_clip_val=max_norm, gradient_clip_algorithm="norm")
