"""Lightning callbacks of a run: its cost (step time, token throughput, peak memory), its learning curves, its
checkpoints (bench.run.checkpoints), its training progress bar."""

from __future__ import annotations

import os
import random
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import psutil
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import Checkpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from bench.run.checkpoints import CHECKPOINT_NAME, Preempted

if TYPE_CHECKING:
    from methods.training import Training

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


def full_weights(wrapped: torch.nn.Module | None) -> AbstractContextManager:
    """Every weight of the model on every rank while inside: FSDP keeps a shard of each per rank (a no-op otherwise)."""
    return FSDP.summon_full_params(wrapped, writeback=False) if isinstance(wrapped, FSDP) else nullcontext()


class CostMeter(L.Callback):
    """Median step time, tokens per second and peak memory over `fit`.

    Tokens (and so tokens per second) count the batches of every process of a distributed run; step time and peak
    memory are this process's. Peak memory is CUDA's max allocated bytes on a GPU; on a CPU it is the peak resident
    set size of this process sampled every 5 ms during fit (stated in the record as `memory_kind`), with the resident
    size when fit started (`fit_start_memory_bytes`), so the rise that training itself caused can be read off even in
    a shared process.
    `memory_isolated` says whether the peak belongs to this run alone: always for CUDA (its peak is reset at fit
    start), for the CPU only in the first fit of a fresh process, since a long-lived process keeps what earlier runs
    left in its allocator.
    """

    fits_in_process = 0  # fits started in this process, by any meter

    def __init__(self) -> None:
        self.step_times: list[float] = []
        self.tokens = 0
        self.train_seconds = 0.0
        self.peak_bytes = 0
        self.start_bytes: int | None = None
        self.memory_kind = "cpu_rss_peak"
        self.memory_isolated = False
        self._start = 0.0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def _sample_rss(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)
            self._stop.wait(0.005)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.memory_isolated = pl_module.device.type == "cuda" or CostMeter.fits_in_process == 0
        CostMeter.fits_in_process += 1
        if pl_module.device.type == "cuda":
            self.memory_kind = "cuda_max_allocated"
            torch.cuda.reset_peak_memory_stats(pl_module.device)
            self.start_bytes = torch.cuda.memory_allocated(pl_module.device)
        else:
            self.start_bytes = psutil.Process().memory_info().rss
            self._stop.clear()
            self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
            self._sampler.start()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.tokens = int(trainer.strategy.reduce(torch.tensor(self.tokens, device=pl_module.device), reduce_op="sum"))
        if self.memory_kind == "cuda_max_allocated":
            self.peak_bytes = max(self.peak_bytes, torch.cuda.max_memory_allocated(pl_module.device))
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        elapsed = time.perf_counter() - self._start
        self.step_times.append(elapsed)
        self.train_seconds += elapsed
        self.tokens += int(batch["attention_mask"].sum())

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run's meter carries on: the steps timed before the checkpoint, their tokens, the peak."""
        return {
            "step_times": self.step_times,
            "tokens": self.tokens,
            "train_seconds": self.train_seconds,
            "peak_bytes": self.peak_bytes,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.step_times = state_dict["step_times"]
        self.tokens = state_dict["tokens"]
        self.train_seconds = state_dict["train_seconds"]
        self.peak_bytes = max(self.peak_bytes, state_dict["peak_bytes"])

    def summary(self) -> dict[str, Any]:
        return {
            "step_time_median_s": statistics.median(self.step_times) if self.step_times else None,
            "steps": len(self.step_times),
            "train_seconds": self.train_seconds,
            "tokens_per_s": self.tokens / self.train_seconds if self.train_seconds else None,
            "train_tokens": self.tokens,
            "peak_memory_bytes": self.peak_bytes,
            "memory_kind": self.memory_kind,
            "memory_isolated": self.memory_isolated,
            "fit_start_memory_bytes": self.start_bytes,
        }


class LearningCurves(L.Callback):
    """The training loss and learning rate of every optimizer step, and validation scores every `every` steps.

    `evaluate` scores the model on the validation split. It runs between steps with the RNG states (Python, NumPy,
    torch, CUDA) saved and restored and every submodule's train/eval mode put back, so a run with curves trains
    exactly as one without: the same config and seed reach the same final numbers. Each validation point goes to the
    Trainer's loggers as `validation/<metric>` at its step as it is computed. The final step is not evaluated here:
    the run's own validation evaluation closes the curve.
    """

    def __init__(self, evaluate: Callable[[torch.nn.Module], dict[str, float]], every: int | None) -> None:
        self.evaluate = evaluate
        self.every = every
        self.train_loss: list[dict[str, float]] = []
        self.lr: list[dict[str, float]] = []
        self.validation: list[dict[str, float]] = []
        self._lr = 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._lr = trainer.optimizers[0].param_groups[0][
            "lr"
        ]  # the rate this step uses; the scheduler steps before batch end

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.train_loss.append({"step": step, "loss": float(loss)})
        self.lr.append({"step": step, "lr": self._lr})
        if self.every and step % self.every == 0 and step < trainer.max_steps:
            with full_weights(trainer.strategy.model), trainer.precision_plugin.forward_context():
                scores = self._evaluate_between_steps(pl_module)
            self.validation.append({"step": step, **scores})
            for logger in trainer.loggers:
                logger.log_metrics({f"validation/{name}": value for name, value in scores.items()}, step=step)

    def _evaluate_between_steps(self, pl_module: Training) -> dict[str, float]:
        modes = {module: module.training for module in pl_module.modules()}
        states = (
            random.getstate(),
            np.random.get_state(),
            torch.get_rng_state(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        )
        try:
            return self.evaluate(pl_module.method.model)
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])
            if states[3] is not None:
                torch.cuda.set_rng_state_all(states[3])
            for module, training in modes.items():
                module.training = (
                    training  # not train(): it recurses, and a module reached twice would reset its children
                )

    def state_dict(self) -> dict[str, Any]:
        return {"train_loss": self.train_loss, "lr": self.lr, "validation": self.validation}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_loss, self.lr, self.validation = state_dict["train_loss"], state_dict["lr"], state_dict["validation"]

    def curves(self, final_step: int, final_validation: dict[str, float]) -> dict[str, list[dict[str, float]]]:
        """The record's `curves`: the validation curve ends with the run's final validation scores."""
        return {
            "validation": [*self.validation, {"step": final_step, **final_validation}],
            "train_loss": self.train_loss,
            "lr": self.lr,
        }


class Checkpoints(Checkpoint):
    """Writes the run's checkpoint (bench.run.checkpoints) and stops the run after a signal. Lightning runs
    checkpoint callbacks last, so the other callbacks' states include the step being saved."""

    def __init__(self, folder: Path, every_steps: int | None, every_minutes: float | None) -> None:
        self.folder = folder
        self.every_steps = every_steps
        self.every_seconds = None if every_minutes is None else 60 * every_minutes
        self._signal: str | None = None
        self._signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._last_save = time.monotonic()
        self._rng_to_restore: dict[str, Any] | None = None
        self._step = 0
        self.resumed: list[dict[str, Any]] = []  # one entry per resumption of this run, oldest first

    @property
    def path(self) -> Path:
        return self.folder / CHECKPOINT_NAME

    def _note_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signal = signal.Signals(signum).name
        self._signum = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Take the stop signals from here on (after Lightning set its own), and restore a resumed run's RNG states:
        nothing draws from them between here and the first step."""
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._note_signal)
        self._last_save = time.monotonic()
        if self._rng_to_restore is not None:
            _set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step >= trainer.max_steps:
            return
        stop = trainer.strategy.reduce_boolean_decision(self._signal is not None, all=False)
        due = (self.every_steps is not None and step % self.every_steps == 0) or (
            self.every_seconds is not None and time.monotonic() - self._last_save >= self.every_seconds
        )
        if stop or due:
            trainer.train_dataloader.batches_trained = batch_idx + 1
            self._step = step
            self._save(trainer)
        if stop:
            self._hand_on()
            raise Preempted(step, self.path, self._signal or "a stop signal on another rank")

    def _hand_on(self) -> None:
        """Now that the checkpoint is safe, pass SIGUSR1/SIGUSR2 on to the handler that held it before: in a submitit
        job that is submitit's, which requeues the job and exits (the requeued job resumes from the checkpoint).
        SIGTERM is not passed on: the run stops here, and a cluster that requeues preempted jobs reruns it."""
        previous = self._previous.get(self._signum) if self._signum in (signal.SIGUSR1, signal.SIGUSR2) else None
        if callable(previous):
            previous(self._signum, None)

    def _save(self, trainer: L.Trainer) -> None:
        """Write the checkpoint beside the last one and move it into place: a kill mid-write leaves the last one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{CHECKPOINT_NAME}.partial"
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier("checkpoint saved")
        self._last_save = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        rng = _collect_rng_states()
        name, keys, *position = rng["numpy"]  # NumPy's key array as a tensor: the checkpoint loads weights-only
        return {
            "rng": rng | {"numpy": (name, torch.from_numpy(keys.copy()), *position)},
            "resumed": self.resumed,
            "step": self._step,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        rng = state_dict["rng"]
        name, keys, *position = rng["numpy"]
        self._rng_to_restore = rng | {"numpy": (name, keys.numpy(), *position)}
        self.resumed = [
            *state_dict["resumed"],
            {"from_step": state_dict["step"], "at": datetime.now(UTC).isoformat(timespec="seconds")},
        ]


class StepProgressBar(TQDMProgressBar):
    """One training bar over optimizer steps (`train 37/100 step`) on stderr, instead of a bar per epoch."""

    def on_train_start(self, trainer: L.Trainer, *_: Any) -> None:
        self.train_progress_bar = Tqdm(
            total=trainer.max_steps,
            desc="train",
            unit="step",
            disable=self.is_disabled,
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=0,
        )

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        """One bar for the whole fit: nothing to reset per epoch."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        if self._should_update(trainer.global_step, trainer.max_steps) and not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The bar spans epochs: it is closed when training ends."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
