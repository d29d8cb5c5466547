"""Length-grouped training batches: a seeded permutation of every example, batches of similar length."""

from __future__ import annotations

import random

import torch

from bench.run.batching import LengthGrouped


def _batches(sampler: LengthGrouped, size: int) -> list[list[int]]:
    order = list(sampler)
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_every_example_once_in_batches_of_similar_length_reproducibly() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(2000)]
    grouped = _batches(LengthGrouped(lengths, 16, torch.Generator().manual_seed(7)), 16)
    assert sorted(i for batch in grouped for i in batch) == list(range(2000))
    shuffled = list(torch.randperm(2000, generator=torch.Generator().manual_seed(7)).tolist())
    plain = [shuffled[i : i + 16] for i in range(0, 2000, 16)]

    def padded(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)

    assert padded(grouped) < 0.7 * padded(plain)
    again = _batches(LengthGrouped(lengths, 16, torch.Generator().manual_seed(7)), 16)
    other = _batches(LengthGrouped(lengths, 16, torch.Generator().manual_seed(8)), 16)
    assert grouped == again and grouped != other
    first_epoch_sampler = LengthGrouped(lengths, 16, torch.Generator().manual_seed(7))
    assert list(first_epoch_sampler) != list(first_epoch_sampler), "each epoch draws a new order"


def test_a_run_and_a_spec_take_the_setting(tmp_path) -> None:
    import pytest

    from bench.run.config import RunConfig
    from bench.run.execute import execute
    from bench.run.plan import plan
    from bench.sweep.spec import parse_spec
    from core.errors import BenchError

    config = RunConfig(
        method="lora",
        task="glue/sst2",
        model="minilm-l6",
        budget="0.5%",
        max_steps=3,
        batch_size=8,
        train_examples=64,
        validation_examples=16,
        test_examples=16,
        group_by_length=True,
    )
    record = execute(plan(config), tmp_path, progress=False)
    assert record["status"] == "ok" and record["config"]["group_by_length"] is True
    assert plan(config).key != plan(RunConfig(**{**config.to_dict(), "group_by_length": False})).key
    spec = {"name": "s", "model": "minilm-l6", "tasks": ["glue/sst2"], "seeds": [0], "methods": ["full"]}
    assert parse_spec({**spec, "training": {"group_by_length": True}}).training["group_by_length"] is True
    with pytest.raises(BenchError, match="group_by_length must be bool"):
        parse_spec({**spec, "training": {"group_by_length": 1}})
