"""Training runs with every module in train mode (dropout on), whatever mode loading and calibration left."""

from __future__ import annotations

import lightning as L
import torch

from methods import get_method
from methods.base import OptimConfig
from methods.training import Training
from tests.conftest import batch_of


class _Modes(L.Callback):
    """The train flag of every module at each training batch."""

    def __init__(self) -> None:
        self.seen: list[dict[str, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append({name: module.training for name, module in pl_module.named_modules()})


def test_every_module_trains_in_train_mode(minilm_classifier, sst2_rows) -> None:
    loaded = minilm_classifier
    loaded.model.eval()  # as from_pretrained returns it
    method_cls = get_method("row-sft")  # calibrates in eval mode
    module = method_cls(loaded.model, method_cls.Options(), OptimConfig(lr=1e-3, max_steps=2), loaded.head_prefixes)
    batch = batch_of("glue/sst2", sst2_rows[:8], loaded.tokenizer)
    module.calibrate([batch, batch], None, {"test": True})
    module.apply(module.solve_budget(40_000))
    modes = _Modes()
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        callbacks=[modes],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Training(module), train_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None))
    assert modes.seen and all(all(flags.values()) for flags in modes.seen), [
        name for name, on in modes.seen[0].items() if not on
    ][:5]
    dropout = [m for m in module.model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    assert dropout, "MiniLM has dropout layers with p > 0, so train mode changes its outputs"
