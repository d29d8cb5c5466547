"""Executing a planned run: fine-tune, evaluate, and write its record.

A run whose loss, gradient or metric turns non-finite stops at once and is recorded as failed, with the step and the
quantity that diverged. Lightning, the modules built on it (bench.run.callbacks, bench.run.divergence,
methods.training) and transformers are imported when a run executes, not when this module loads: planning imports
this module (and hashes its code) and checks a budget without them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.records.environment import environment
from bench.records.record import SCHEMA_VERSION, write_record
from bench.records.store import Store
from bench.run import models
from bench.run.artifacts import ADAPTER_SUFFIX, write_state
from bench.run.batching import LengthGrouped, ResumableLoader
from bench.run.budget import solve_knob
from bench.run.settings import check_machine
from core.errors import BenchError
from core.files import cache_dir, check_writable, write_jsonl_atomic
from methods.density import DensityMeter
from tasks.leakage import leakage_report

if TYPE_CHECKING:
    import lightning as L
    from lightning.pytorch.loggers import Logger

    from bench.run.callbacks import Checkpoints, CostMeter, LearningCurves
    from bench.run.divergence import Diverged
    from bench.run.plan import RunPlan
    from methods.base import PeftMethod
    from methods.training import Training
    from tasks.base import EvalResult


def execute(
    run: RunPlan,
    out_dir: Path,
    progress: bool = True,
    loggers: Sequence[Logger] = (),
    checkpoint_every: int | None = None,
) -> dict[str, Any] | None:
    """Train, evaluate and write `<out_dir>/<run_key>.json` (+ predictions, + the trained state); returns the record.

    `progress` shows bars on stderr: training steps, then evaluation or generation. The Trainer logs to its CSV logs
    and to `loggers` (a W&B run's, say) during fit. A diverged run (non-finite loss,
    gradient or metric) writes a failed record with its `divergence` and returns it.

    Training writes a checkpoint every `checkpoint_every` steps, every `DEFAULT_EVERY_MINUTES` minutes, and after
    SIGUSR1, SIGUSR2 or SIGTERM, where it then stops with `Preempted` (bench.run.checkpoints). A run whose key has a
    checkpoint in the store resumes from it, and its record lists the steps it resumed from (`resumed`).

    Under DDP/FSDP every process runs this function: evaluation is split across them (`tasks.base.across_ranks`), and
    rank 0 alone writes and returns the record, once every rank has finished; the other ranks return None. A rank
    that raises ends its process, which ends the run (Lightning's launcher stops the others) before any record."""
    # Lightning loads when a run executes (see the module docstring)
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from bench.run.callbacks import full_weights
    from bench.run.checkpoints import remove_checkpoints, saved_checkpoint
    from bench.run.divergence import Diverged

    check_writable(out_dir)
    progress = progress and rank_zero_only.rank == 0  # one set of bars, rank 0's
    laps = Laps()
    loaded, module = _load(run)
    base_params = loaded.base_params  # the pretrained model's, before the method attaches anything
    laps.lap("load")
    counts = _calibrate(run, loaded, module, base_params)
    laps.lap("calibrate")
    evaluate = _evaluator(run, loaded.tokenizer, progress)
    L.seed_everything(run.config.seed, workers=True, verbose=False)  # calibration may or may not have drawn numbers
    fit = _trainer(run, out_dir, evaluate, progress, loggers, checkpoint_every)
    try:
        training = _fit(run, fit.trainer, module, loaded.tokenizer, saved_checkpoint(out_dir, run.key))
        laps.lap("fit")
        # FSDP leaves each rank a shard of every weight: gather them all. Evaluation runs in the precision training
        # ran in (the precision plugin's autocast under bf16-mixed), as Lightning's own validation loop would.
        with full_weights(fit.trainer.strategy.model), fit.trainer.precision_plugin.forward_context():
            model = module.model.to(training.device)
            evaluations, density = _evaluate(run, model, evaluate)
            laps.lap("evaluate")
            fit.trainer.strategy.barrier("evaluated")  # every rank got here: only now may rank 0 record success
            if not fit.trainer.is_global_zero:
                return None
            record = _record(run, loaded, module, counts, _results(run, module, fit, evaluations, density))
            record["artifacts"] = {"adapter": _save_state(run, out_dir, module, record)}
            laps.lap("record")
            resumed = fit.checkpoints.resumed if fit.checkpoints else []
            record |= {"timings": laps.seconds, "wall_time_s": laps.total(), "resumed": resumed}
            _write(out_dir, record, evaluations)
            remove_checkpoints(out_dir, run.key)
            return record
    except Diverged as diverged:
        return _diverged(run, out_dir, fit.trainer, diverged)


@dataclass(frozen=True)
class ParamCounts:
    """A run's parameter counts: the base model's, the budget's (None without one), and what the knob trains."""

    base_model: int
    requested: int | None
    knob: int
    achieved: int


@dataclass(frozen=True)
class Fit:
    """A run's Trainer and the callbacks whose measurements its record keeps."""

    trainer: L.Trainer
    meter: CostMeter
    curves: LearningCurves
    checkpoints: Checkpoints | None  # None under FSDP (see `_trainer`)


def _load(run: RunPlan) -> tuple[models.LoadedModel, PeftMethod]:
    """The planned model (its weights still those planned) with the method attached; the process set up and seeded."""
    import lightning as L  # Lightning loads when a run executes (see the module docstring)

    config = run.config
    quiet_libraries()
    check_machine(config.accelerator, str(config.devices), config.strategy, config.precision, config.num_nodes)
    if config.threads:
        torch.set_num_threads(config.threads)
    L.seed_everything(config.seed, workers=True, verbose=False)
    loaded = models.load_model(config.model, run.task.model_kind, run.task.num_labels, config.dtype)
    if loaded.fingerprint != run.fingerprint.value:
        raise BenchError(f"the weights of model {config.model} changed since the run was planned", "plan the run again")
    return loaded, run.method_cls(loaded.model, run.recipe.options, run.recipe.optim, loaded.head_prefixes)


def _calibrate(run: RunPlan, loaded: models.LoadedModel, module: PeftMethod, base_params: int) -> ParamCounts:
    """Calibrate `module` on the first training batches, then apply the knob that meets the budget; the counts."""
    config = run.config
    requested = run.budget.resolve(base_params) if run.budget else None
    calibration_batches = [
        batch
        for _, batch in zip(range(config.calibration_batches), _loader(run, loaded.tokenizer, config.seed + 10_000))
    ]
    context = {
        "model": loaded.fingerprint,
        "data": run.source.files,
        "seed": config.seed,
        "batches": config.calibration_batches,
        "batch_size": config.batch_size,
        "max_length": config.max_length,
        "train_examples": config.train_examples,
    }
    module.calibrate(calibration_batches, cache_dir() / "calibration", context, config.head_probe_steps)
    knob = solve_knob(module, requested, config.method)
    module.apply(knob)
    achieved = module.trainable_count()
    if achieved != module.count_for_knob(knob):
        raise RuntimeError(
            f"{config.method}: {achieved} trainable parameters, but the analytic count for {module.knob_name}={knob} is {module.count_for_knob(knob)}"
        )
    return ParamCounts(base_model=base_params, requested=requested, knob=knob, achieved=achieved)


def _evaluator(run: RunPlan, tokenizer: Any, progress: bool) -> Callable[..., EvalResult]:
    """The task's evaluation at the run's batch size and length: called with a model and the `examples` to score."""
    return partial(
        run.task.evaluate,
        tokenizer=tokenizer,
        batch_size=run.config.eval_batch_size,
        max_length=run.config.max_length,
        progress=progress,
    )


def _trainer(
    run: RunPlan,
    out_dir: Path,
    evaluate: Callable[..., EvalResult],
    progress: bool,
    loggers: Sequence[Logger],
    checkpoint_every: int | None,
) -> Fit:
    """The run's Trainer, logging to `<out_dir>/logs/` and `loggers`, with its cost meter, learning curves,
    divergence guard and checkpoints."""
    # Lightning and the callbacks built on it load when a run executes (see the module docstring)
    import lightning as L
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from bench.run.callbacks import Checkpoints, CostMeter, LearningCurves, StepProgressBar
    from bench.run.checkpoints import DEFAULT_EVERY_MINUTES, checkpoint_folder
    from bench.run.divergence import DivergenceGuard

    config = run.config
    run_dir = out_dir / "logs" / run.key[:16]
    meter = CostMeter()
    curves = LearningCurves(lambda model: evaluate(model, examples=run.splits["validation"]).metrics, config.eval_every)
    # under FSDP every rank holds a shard of each trained tensor: its checkpoints would need the sharded state-dict
    # protocol, which is not built, so FSDP runs are not checkpointed (and restart from step 0)
    checkpoints = (
        None
        if "fsdp" in config.strategy
        else Checkpoints(checkpoint_folder(out_dir, run.key), checkpoint_every, DEFAULT_EVERY_MINUTES)
    )
    trainer = L.Trainer(
        max_steps=config.max_steps if run.method_cls.trains else 0,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        logger=[L.pytorch.loggers.CSVLogger(run_dir, name="", version=""), *loggers],
        callbacks=[
            meter,
            curves,
            DivergenceGuard(),
            *([checkpoints] if checkpoints else []),
            *([StepProgressBar()] if progress else []),
        ],  # the meter first: its step time excludes the curve's evaluations
        # on SLURM, stop signals go to `checkpoints` (a consistent checkpoint at a step boundary), not to Lightning's
        # auto-requeue, which saves from inside the signal handler, mid-step
        plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None,
        enable_checkpointing=checkpoints is not None,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(10, config.max_steps)),
        default_root_dir=run_dir,
        deterministic="warn",
    )
    return Fit(trainer=trainer, meter=meter, curves=curves, checkpoints=checkpoints)


def _fit(run: RunPlan, trainer: L.Trainer, module: PeftMethod, tokenizer: Any, resume_from: Path | None) -> Training:
    """Train `module` on the run's training batches, from the checkpoint `resume_from` if given; the Lightning module
    trained. Raises `Diverged` on divergence, `Preempted` after a stop signal."""
    from methods.training import Training  # loads Lightning: when a run executes (see the module docstring)

    training = Training(module)
    trainer.fit(
        training, train_dataloaders=_loader(run, tokenizer, run.config.seed), ckpt_path=resume_from, weights_only=True
    )
    return training


def _evaluate(
    run: RunPlan, model: torch.nn.Module, evaluate: Callable[..., EvalResult]
) -> tuple[dict[str, EvalResult], dict[str, Any] | None]:
    """The trained model's results on the validation and test splits, and its MLP activation density (DEFT's measure,
    for every method) read off the test evaluation's own forwards (None where it runs none that count, see
    `DensityMeter`). Raises `Diverged` for a non-finite metric."""
    from bench.run.divergence import check_metrics  # loads Lightning: when a run executes (see the module docstring)

    evaluations = {"validation": evaluate(model, examples=run.splits["validation"])}
    with DensityMeter(model) as meter:
        evaluations["test"] = evaluate(model, examples=run.splits["test"])
    check_metrics({split: result.metrics for split, result in evaluations.items()})
    return evaluations, meter.result()


def _record(
    run: RunPlan, loaded: models.LoadedModel, module: PeftMethod, counts: ParamCounts, results: dict[str, Any]
) -> dict[str, Any]:
    """The ok record of `run` but for its saved state and timings: what ran, its `results` (see `_results`), where."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_key": run.key,
        "status": "ok",
        "error": None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": record_config(run),
        "method": {
            "name": run.config.method,
            "knob": {"name": module.knob_name, "value": counts.knob},
            "options": dataclasses.asdict(module.options),
            "recipe": run.recipe.record,
            "choices": module.describe(),
            "calibration": module.calibration_info,
        },
        "task": {
            "name": run.task.name,
            "family": run.task.family,
            "primary_metric": run.task.primary_metric,
            **run.task.describe(run.source),
        },
        "leakage": leakage_report(run.task, run.splits),
        "model": {
            "name": loaded.name,
            "source": loaded.source,
            "fingerprint": loaded.fingerprint,
            "fingerprint_of": loaded.fingerprint_of,
            "dtype": run.config.dtype,
        },
        "params": _params(run, module, counts),
        **results,
        "data": {
            "source": run.source.kind,
            "root": "<data-dir>" if run.source.kind == "data-dir" else str(run.source.root),
            "files": run.source.files,
        },
        "env": environment(),
    }


def _params(run: RunPlan, module: PeftMethod, counts: ParamCounts) -> dict[str, Any]:
    """The record's `params`: the base model's count, the budget requested and the count trained, as % of the base."""
    return {
        "base_model": counts.base_model,
        "budget": run.budget.text if run.budget else None,
        "requested": counts.requested,
        "requested_pct": 100 * counts.requested / counts.base_model if counts.requested else None,
        "achieved": counts.achieved,
        "achieved_pct": 100 * counts.achieved / counts.base_model,
        "head": module.head_count(),
    }


def _results(
    run: RunPlan, module: PeftMethod, fit: Fit, evaluations: dict[str, EvalResult], density: dict[str, Any] | None
) -> dict[str, Any]:
    """The record's results: metrics and examples per split, activation density, cost, learning curves."""
    trainer = fit.trainer
    return {
        "metrics": {split: result.metrics for split, result in evaluations.items()},
        "eval": {split: {"examples": result.n_examples} for split, result in evaluations.items()},
        "density": density,
        "cost": {
            **fit.meter.summary(),
            "adapter_bytes": module.adapter_bytes(),
            "world_size": trainer.world_size,
            "global_batch_size": run.config.batch_size * trainer.world_size,
        },
        "curves": fit.curves.curves(trainer.global_step, evaluations["validation"].metrics),
    }


def _save_state(run: RunPlan, out_dir: Path, module: PeftMethod, record: dict[str, Any]) -> dict[str, Any]:
    """Save what `module` trained next to the record, described by the record; the record's entry for the file. The
    description names the calibration by its key and settings; how it was obtained this time (computed or loaded from
    the cache, the head probe's losses) stays in the record, so the file depends only on what was trained."""
    calibration = {
        name: module.calibration_info[name] for name in ("key", "settings") if name in module.calibration_info
    }
    method = record["method"] | {"calibration": calibration}
    description = {"run_key": run.key, "method": method, "model": record["model"], "task": run.task.name}
    return write_state(module, out_dir / f"{run.key}{ADAPTER_SUFFIX}", description)


def _write(out_dir: Path, record: dict[str, Any], evaluations: dict[str, EvalResult]) -> None:
    """Write the predictions, then the record (a record on disk is a finished run)."""
    write_jsonl_atomic(
        out_dir / f"{record['run_key']}.predictions.jsonl",
        [{"split": split, **p} for split, result in evaluations.items() for p in result.predictions],
    )
    write_record(out_dir / f"{record['run_key']}.json", record)


def _loader(plan_: RunPlan, tokenizer: Any, seed: int) -> ResumableLoader:
    """Shuffled training batches; with `group_by_length`, batches of similar length (bench.run.batching)."""
    config = plan_.config
    features = _train_features(plan_, tokenizer)
    generator = torch.Generator().manual_seed(seed)
    grouped = (
        LengthGrouped([len(f["input_ids"]) for f in features], config.batch_size, generator)
        if config.group_by_length
        else None
    )
    return ResumableLoader(
        features,
        batch_size=config.batch_size,
        shuffle=grouped is None,
        sampler=grouped,
        generator=generator,
        collate_fn=partial(plan_.task.collate, tokenizer=tokenizer),
        drop_last=len(features) > config.batch_size,
    )


_FEATURES: dict[tuple[Any, ...], list[dict[str, Any]]] = {}  # a sweep worker encodes a training set once


def _train_features(plan_: RunPlan, tokenizer: Any) -> list[dict[str, Any]]:
    """The training split encoded by the task, cached per task, data files, model and length in this process."""
    config = plan_.config
    key = (
        plan_.task.name,
        tuple(sorted(plan_.source.files.items())),
        config.model,
        config.max_length,
        config.train_examples,
    )
    if key not in _FEATURES:
        _FEATURES[key] = [plan_.task.encode(row, tokenizer, config.max_length) for row in plan_.splits["train"]]
    return _FEATURES[key]


def _diverged(run: RunPlan, out_dir: Path, trainer: L.Trainer, diverged: Diverged) -> dict[str, Any] | None:
    """Rank 0 records the divergence (never over an ok record) and returns the failure; other ranks return None.

    `Diverged` is raised on every rank at once: the guard decides on every rank's losses and gradients, and the
    metrics are gathered before they are checked."""

    if not trainer.is_global_zero:
        return None
    cause = diverged.cause()
    failure = Store(out_dir).write_failure(run.key, record_config(run), diverged, divergence=cause)
    return failure or {"status": "failed", "error": str(diverged), "divergence": cause}


class Laps:
    """Wall seconds of a run's consecutive phases: `lap(name)` ends the phase that began at the previous lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = self._mark = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._mark, 3)
        self._mark = now

    def total(self) -> float:
        """Wall seconds since the first phase began."""
        return time.perf_counter() - self._start


def record_config(run: RunPlan) -> dict[str, Any]:
    """The config as a record stores it: the learning rate used, and a data folder of the user's as `<data-dir>`."""
    return {**run.config.to_dict(), "lr": run.lr, "data_dir": None if run.config.data_dir is None else "<data-dir>"}


def quiet_libraries() -> None:
    """Keep library chatter (Lightning tips, tokenizer notes) out of the run's output."""
    for name in ("lightning.pytorch", "lightning.fabric", "transformers", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import transformers  # lazy: planning imports this module without transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
