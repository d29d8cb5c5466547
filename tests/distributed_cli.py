"""`bench` with two test hooks for distributed runs: `python -m tests.distributed_cli run ...`.

- Strategy `fsdp_cpu`: Lightning's FSDPStrategy on the CPU over gloo. Lightning refuses the name `fsdp` without a
  GPU, and torch's FSDP needs a device id to run on a CPU, which Lightning does not pass there; this is the closest
  form of FSDP a CPU runs.
- `FAIL_RANK=<n>`: rank n raises as it starts evaluating, as a rank that crashes after training would.

Lightning starts the other ranks by running this same command, so every rank has both hooks.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy, StrategyRegistry
from torch import nn

import tasks.glue
from bench import cli
from bench.run import settings


class CPUFSDPStrategy(FSDPStrategy):
    """Lightning's FSDP, wrapping the model with the CPU as its device."""

    def _setup_model(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(
            module=model, sharding_strategy=self.sharding_strategy, device_id=torch.device("cpu"), **self.kwargs
        )


def failing_on_purpose(items: list[Any], score: Any) -> list[Any]:
    raise RuntimeError(f"rank {os.environ['LOCAL_RANK']} fails on purpose")


StrategyRegistry.register("fsdp_cpu", CPUFSDPStrategy, "FSDP on the CPU over gloo", process_group_backend="gloo")
settings.STRATEGIES = settings.CHOICES["strategy"] = (*settings.STRATEGIES, "fsdp_cpu")
if os.environ.get("LOCAL_RANK", "0") == os.environ.get("FAIL_RANK"):
    tasks.glue.across_ranks = failing_on_purpose

if __name__ == "__main__":
    raise SystemExit(cli.main())
