"""Checkpoints inside a run (bench.run.checkpoints): a run stopped by a signal, or killed after a periodic checkpoint,
resumes and ends bit-identical to the run never stopped: metrics, curves, predictions and saved state. `bench run`
stopped from outside is in tests/test_gpu_check.py (the GPU check's round trip, on the CPU)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import pytest

import bench.run.execute as execute_module
from bench.run.checkpoints import Preempted, saved_checkpoint
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.plan import plan
from core.files import CACHE_ENV

# 24 training sentences in batches of 8: three batches a pass, so 7 steps span three passes
TINY = {
    "task": "glue/sst2",
    "model": "minilm-l6",
    "max_steps": 7,
    "batch_size": 8,
    "max_length": 32,
    "train_examples": 24,
    "validation_examples": 16,
    "test_examples": 32,
    "calibration_batches": 1,
    "head_probe_steps": 2,
    "eval_every": 2,
    "threads": 1,
}


class At(L.Callback):
    """Calls `action` at the end of optimizer step `step`."""

    def __init__(self, step: int, action: Any) -> None:
        self.step = step
        self.action = action

    def on_train_batch_end(self, trainer: L.Trainer, *_: Any) -> None:
        if trainer.global_step == self.step:
            self.action()


class Crash(Exception):
    pass


def _crash() -> None:
    raise Crash("the node went away")


def with_callback(monkeypatch: pytest.MonkeyPatch, callback: L.Callback) -> None:
    """Runs executed from here on carry `callback` before their own (so before the checkpoint callback)."""
    make_trainer = execute_module._trainer

    def trainer_with_callback(*args: Any) -> Any:
        fit = make_trainer(*args)
        fit.trainer.callbacks.insert(0, callback)
        return fit

    monkeypatch.setattr(execute_module, "_trainer", trainer_with_callback)


def outcome(record: dict[str, Any], store: Path) -> dict[str, Any]:
    """What must not depend on the run having stopped: scores, curves, predictions, the saved state's digest."""
    key = record["run_key"]
    return {
        "metrics": record["metrics"],
        "curves": {name: record["curves"][name] for name in ("validation", "train_loss", "lr")},
        "adapter_sha256": record["artifacts"]["adapter"]["sha256"],
        "predictions": (store / f"{key}.predictions.jsonl").read_text(encoding="utf-8"),
        "steps": record["cost"]["steps"],
    }


@pytest.mark.parametrize(
    ("method", "budget", "stop_at"),
    [("lora", "0.5%", 4), ("lora", "0.5%", 3), ("smt", "0.5%", 4), ("full", None, 5)],
    ids=["lora-mid-pass", "lora-end-of-pass", "smt", "full"],
)
def test_a_run_stopped_by_sigusr1_resumes_bit_identical(method, budget, stop_at, tmp_path, monkeypatch) -> None:
    """The first run computes the calibration, the later ones load it from the cache: the saved state must not tell."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    config = RunConfig(method=method, budget=budget, **TINY)
    whole = execute(plan(config), tmp_path / "whole", progress=False)
    assert whole["resumed"] == []

    store = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        with_callback(patch, At(stop_at, lambda: os.kill(os.getpid(), signal.SIGUSR1)))
        with pytest.raises(Preempted) as stopped:
            execute(plan(config), store, progress=False)
    assert stopped.value.step == stop_at
    assert saved_checkpoint(store, whole["run_key"]) is not None
    assert not (store / f"{whole['run_key']}.json").exists()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # the run gave the signal back

    resumed = execute(plan(config), store, progress=False)
    assert [entry["from_step"] for entry in resumed["resumed"]] == [stop_at]
    assert outcome(resumed, store) == outcome(whole, tmp_path / "whole")
    assert saved_checkpoint(store, whole["run_key"]) is None  # removed once the record is written


def test_a_run_killed_after_a_periodic_checkpoint_resumes_from_it(tmp_path, monkeypatch) -> None:
    config = RunConfig(method="lora", budget="0.5%", **TINY)
    whole = execute(plan(config), tmp_path / "whole", progress=False)
    store = tmp_path / "killed"
    with monkeypatch.context() as patch:
        with_callback(patch, At(5, _crash))
        with pytest.raises(Crash):
            execute(plan(config), store, progress=False, checkpoint_every=2)
    resumed = execute(plan(config), store, progress=False)
    assert [entry["from_step"] for entry in resumed["resumed"]] == [4]
    assert outcome(resumed, store) == outcome(whole, tmp_path / "whole")
