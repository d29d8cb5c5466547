"""Checkpoints inside a run, so a preempted or killed run resumes where it stopped and ends with the same numbers.

The callback that writes them is bench.run.callbacks.Checkpoints. A checkpoint is Lightning's (optimizer, scheduler,
loop progress, callback states) with the module's weights replaced by what the method trains
(methods.training.Training.on_save_checkpoint): trainable tensors and the selection (SMT blocks, row-SFT rows, SVFit
bases), which the resumed run checks against its own calibration. Beside them it holds the RNG states (Python, NumPy,
torch, CUDA) and the data position (bench.run.batching.ResumableLoader): the shuffling generator's state when the pass
over the data began and the batches trained in it, so the resumed run draws the same batches in the same order and
the same dropout masks. On a CPU a resumed run is bit-identical to one never interrupted.

It is written, atomically, every `every_steps` optimizer steps, every `every_minutes` of training, and at the first
step boundary after SIGUSR1, SIGUSR2 or SIGTERM (a scheduler's warning before preemption or the time limit; under DDP
the ranks agree on it). After a signal the run stops with `Preempted`; the next run of the same key resumes from
`<store>/checkpoints/<run_key>/last.ckpt`, and the folder is removed once the record is written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

CHECKPOINT_NAME = "last.ckpt"
DEFAULT_EVERY_MINUTES = 30.0


class Preempted(Exception):
    """A signal asked the run to stop: its state up to `step` is saved at `path`."""

    def __init__(self, step: int, path: Path, signal_name: str) -> None:
        super().__init__(f"{signal_name} received: stopped after step {step}; checkpoint {path} (rerun to resume)")
        self.step = step
        self.path = path
        self.signal_name = signal_name


def checkpoint_folder(store: Path, run_key: str) -> Path:
    return store / "checkpoints" / run_key


def saved_checkpoint(store: Path, run_key: str) -> Path | None:
    """The run's last checkpoint, if a previous attempt left one."""
    path = checkpoint_folder(store, run_key) / CHECKPOINT_NAME
    return path if path.is_file() else None


def remove_checkpoints(store: Path, run_key: str) -> None:
    shutil.rmtree(checkpoint_folder(store, run_key), ignore_errors=True)
