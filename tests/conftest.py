"""Shared fixtures: the real offline models and real data slices. Every test runs offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

import pytest
import torch

from bench.models import LoadedModel, load_model
from tasks import get_task
from tasks.data_source import DataSource


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
