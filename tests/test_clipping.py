"""Gradient clipping: the global gradient norm at the optimizer step is at most the recipe's max_grad_norm."""

from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from bench.run.models import load_model
from methods.base import OptimConfig
from methods.full import FullFineTuning
from methods.training import Training
from tasks import get_task
from tasks.data_source import DataSource
from tests.conftest import batch_of


class NormAfterStep(L.Callback):
    """The global norm of the gradients the optimizer stepped with (they stay until the next step zeroes them)."""

    norm: float = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()


@pytest.mark.parametrize("max_grad_norm", [None, 0.1])
def test_the_step_uses_gradients_clipped_to_max_grad_norm(max_grad_norm) -> None:
    torch.manual_seed(0)
    loaded = load_model("minilm-l6", "sequence-classification", num_labels=2)
    rows = get_task("glue/sst2").load("train", DataSource(), limit=16)
    batch = batch_of("glue/sst2", rows, loaded.tokenizer)
    optim = dataclasses.replace(OptimConfig(lr=1e-5, max_steps=1), max_grad_norm=max_grad_norm)
    method = FullFineTuning(loaded.model, optim=optim, head_prefixes=loaded.head_prefixes)
    method.apply(1)
    probe = NormAfterStep()
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    trainer.fit(Training(method), train_dataloaders=DataLoader([batch], batch_size=None))
    if max_grad_norm is None:
        assert probe.norm > 0.2, "the unclipped norm must exceed the clip level, or the check below proves nothing"
    else:
        assert probe.norm == pytest.approx(max_grad_norm, rel=1e-4)
