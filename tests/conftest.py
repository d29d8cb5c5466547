"""Shared fixtures: the real offline models and real data slices. Every test runs offline."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest
import torch

from bench.run.models import LoadedModel, load_model
from methods.training import Training
from tasks import get_task
from tasks.data_source import DataSource
from tests.fake_slurm import FakeSlurm


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlurm]:
    """The fake SLURM of tests/fake_slurm first on PATH, its state in a fresh folder; its jobs end with the test."""
    cluster = FakeSlurm.install(tmp_path / "fake-slurm", monkeypatch)
    yield cluster
    cluster.stop()


@pytest.fixture
def minilm_classifier() -> LoadedModel:
    """A fresh MiniLM with a 2-way classification head (seeded, so the head is the same every time)."""
    torch.manual_seed(0)
    return load_model("minilm-l6", "sequence-classification", num_labels=2)


@pytest.fixture
def smollm2() -> LoadedModel:
    """A fresh SmolLM2-135M causal LM."""
    torch.manual_seed(0)
    return load_model("smollm2-135m", "causal-lm")


@pytest.fixture(scope="session")
def sst2_rows() -> list[dict]:
    """The first 64 real SST-2 training sentences."""
    return get_task("glue/sst2").load("train", DataSource(), limit=64)


def batch_of(task_name: str, rows: list[dict], tokenizer, max_length: int = 64) -> dict[str, torch.Tensor]:
    """One padded batch of `rows` encoded by the task."""
    task = get_task(task_name)
    return task.collate([task.encode(row, tokenizer, max_length) for row in rows], tokenizer)


def logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eval-mode logits of `batch`, without gradients."""
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def train_steps(method, batch: dict[str, torch.Tensor], steps: int = 3) -> None:
    """A few optimizer steps of `method` on one batch, through the training step, optimizer and LR schedule of a run."""
    configured = method.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    training = Training(method)
    method.model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        training.training_step(batch, 0).backward()
        optimizer.step()
        scheduler.step()


def recorded_run(method: str, out: Path) -> dict:
    """A short real run of `method` at 0.5 % on SST-2 with MiniLM, through `execute`; the record it wrote."""
    from bench.run.config import RunConfig
    from bench.run.execute import execute
    from bench.run.plan import plan

    config = RunConfig(
        method=method,
        task="glue/sst2",
        model="minilm-l6",
        budget="0.5%",
        max_steps=3,
        batch_size=8,
        train_examples=32,
        validation_examples=16,
        test_examples=16,
        calibration_batches=2,
    )
    record = execute(plan(config), out, progress=False)
    written = json.loads((out / f"{record['run_key']}.json").read_text())
    assert written["params"] == record["params"] and written["method"]["knob"] == record["method"]["knob"]
    return written
