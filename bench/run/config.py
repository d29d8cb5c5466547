"""What a user chooses for one run: `RunConfig`, checked as it is built (bench.run.settings)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from bench.run.settings import check_settings


@dataclass(frozen=True)
class RunConfig:
    """Everything a user chooses for one run. `None` learning rate, weight decay or warm-up means the recipe's.

    `eval_every`: steps between validation evaluations during training, recorded as the run's learning curve
    (`curves.validation`); None evaluates only at the end. It does not change what the run trains.
    """

    method: str
    task: str
    model: str
    budget: str | None = None
    seed: int = 0
    max_steps: int = 100
    batch_size: int = 16
    recipe: str = "default"  # "default" (the project's) or "paper" (methods/recipes.py)
    lr: float | None = None
    weight_decay: float | None = None
    warmup_ratio: float | None = None
    max_length: int = 128
    train_examples: int | None = None
    validation_examples: int | None = 200
    test_examples: int | None = None
    eval_batch_size: int = 64
    eval_every: int | None = None
    group_by_length: bool = False  # training batches of similar length (bench.run.batching): far less padding
    mask_prompt: bool = True  # instruction tasks: prompt tokens out of the loss (False trains on them, as LLM-Adapters)
    calibration_batches: int = 8
    head_probe_steps: int = 100  # a new task head is fitted alone before calibration (methods.head_probe)
    options: dict[str, str] = field(default_factory=dict)
    dtype: str = "float32"
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = (
        1  # machines the run spans, `devices` processes on each (Lightning's `num_nodes`; SLURM's `--nodes`)
    )
    strategy: str = "auto"
    threads: int | None = None
    data_dir: str | None = None

    def __post_init__(self) -> None:
        check_settings(dataclasses.asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
