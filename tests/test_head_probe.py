"""The head probe before calibration: its loss is the model's own task loss, it fits, and the head comes back."""

from __future__ import annotations

import copy

import pytest
import torch

from bench.run.models import load_model
from methods.head_probe import probed_head
from methods.smt import SMT
from tasks import get_task
from tasks.data_source import DataSource
from tests.conftest import batch_of


def _batches(task_name: str, tokenizer, count: int = 3, size: int = 8) -> list[dict[str, torch.Tensor]]:
    rows = get_task(task_name).load("train", DataSource(), limit=count * size)
    return [batch_of(task_name, rows[i * size : (i + 1) * size], tokenizer) for i in range(count)]


def _model_loss(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """transformers' own loss for the head's task type, averaged over examples, in eval mode."""
    model.eval()
    with torch.no_grad():
        total = sum(model(**batch).loss.item() * len(batch["labels"]) for batch in batches)
    return total / sum(len(batch["labels"]) for batch in batches)


@pytest.mark.parametrize(("task_name", "num_labels"), [("glue/sst2", 2), ("glue/stsb", 1)])
def test_probe_fits_with_the_model_loss_and_restores_the_head(task_name: str, num_labels: int) -> None:
    torch.manual_seed(0)
    loaded = load_model("minilm-l6", "sequence-classification", num_labels=num_labels)
    batches = _batches(task_name, loaded.tokenizer)
    initial = copy.deepcopy(loaded.model.state_dict())
    with probed_head(loaded.model, loaded.head_prefixes, batches, steps=50) as probe:
        assert probe["loss_after"] == pytest.approx(_model_loss(loaded.model, batches), rel=1e-5)
        assert probe["loss_after"] < 0.5 * probe["loss_before"]
    after = loaded.model.state_dict()
    assert all(torch.equal(after[name], value) for name, value in initial.items())
    assert probe["loss_before"] == pytest.approx(_model_loss(loaded.model, batches), rel=1e-5)


def test_calibration_goes_through_the_probed_head(tmp_path) -> None:
    torch.manual_seed(0)
    loaded = load_model("minilm-l6", "sequence-classification", num_labels=2)
    batches = _batches("glue/sst2", loaded.tokenizer)
    scores = {}
    for steps in (0, 50):
        method = SMT(loaded.model, head_prefixes=loaded.head_prefixes)
        method.calibrate(batches, tmp_path, {"model": loaded.fingerprint}, head_probe_steps=steps)
        assert method.calibration_info["head_probe"]["steps"] == steps
        assert method.calibration_info["loaded_from_cache"] is False, "the probe must be part of the cache key"
        scores[steps] = torch.cat([score.flatten() for score in method.scores.values()])
    assert not torch.allclose(scores[0], scores[50])
    top = {steps: set(torch.topk(values, 50).indices.tolist()) for steps, values in scores.items()}
    assert top[0] != top[50], "the probe should change which blocks are selected"
