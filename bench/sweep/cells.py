"""The cells of a sweep: one run each, planned from the spec before anything runs, and run by a worker.

`expand` plans phase 1 (the tuning grids at the tuning seeds, every seed of untuned methods) and checks every later
cell once, so bad input fails before anything runs; `plan_cells` plans the cells of given groups at given rates.
`run_cell` runs one cell under its key's file lock, re-checking the store once it holds the lock, so two sweeps on one
store never run a cell twice. A cell logs to its W&B run while it trains and closes it from its record
(`bench.sweep.logged`). A cell that Lightning would run on several local processes (DDP, FSDP) runs as a command of
its own (`bench.sweep.distributed`), whose rank 0 logs it to W&B while its worker holds the lock.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from bench.records.environment import git_state
from bench.records.store import Store
from bench.report import wandb_logging
from bench.run.checkpoints import Preempted
from bench.run.config import RunConfig
from bench.run.plan import plan
from bench.sweep.distributed import launch, relaunches
from bench.sweep.logged import execute_logged
from bench.sweep.spec import MethodSpec, SweepSpec
from bench.sweep.tuning import Group, group_of, tuning_points
from core.errors import BenchError


@dataclass(frozen=True)
class Cell:
    """One run of the sweep, ready to hand to a worker (picklable)."""

    store: str
    key: str
    config: dict[str, Any]
    role: str  # "final" (reported) or "tuning" (a grid point; the chosen one is also final)
    group: str  # the spec's name; W&B groups by spec name and sweep start
    requested: int | None  # the budget as a parameter count of the model (None: no budget)
    wandb: dict[str, Any]
    sweep_started: str
    checkpoint_every: int | None = None
    wait: bool = False
    progress: bool = False

    @property
    def label(self) -> str:
        c = self.config
        return f"{c['method']} {c['budget'] or 'all'} {c['task']} seed={c['seed']}" + (
            f" lr={c['lr']:g}" if c["lr"] is not None else ""
        )


def run_cell(cell: Cell) -> dict[str, Any]:
    """Run one cell in this process unless it is stored or running elsewhere: the unit every executor maps."""
    git_state()  # the checkout this process's code came from (read once per process: a worker's first cell)
    store = Store(cell.store)
    started = time.perf_counter()
    if store.is_done(cell.key, cell.sweep_started):
        return {"key": cell.key, "status": "skipped"}
    rank = int(os.environ.get("SLURM_PROCID", "0"))  # in a multi-device SLURM job only task 0 takes the lock
    lock = store.try_lock(cell.key, cell.wait) if rank == 0 else None
    if rank == 0 and lock is None:
        return {"key": cell.key, "status": "busy"}
    try:
        if rank == 0 and store.is_done(cell.key, cell.sweep_started):  # finished by another worker meanwhile
            return {"key": cell.key, "status": "skipped"}
        return _run_locked(cell, store, rank, started)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(cell: Cell, store: Store, rank: int, started: float) -> dict[str, Any]:
    """Run a cell whose lock this process holds (or one task of a multi-device SLURM job); record and log the run."""
    if rank == 0:  # one event per run, whatever its processes
        store.log_event(cell.key, "started", label=cell.label)
    config = RunConfig(**cell.config)
    try:
        record = _train(cell, store, config)
    except Preempted as stopped:  # its checkpoint stays: the next attempt at the cell resumes from it
        store.log_event(cell.key, "preempted", step=stopped.step, signal=stopped.signal_name)
        return _outcome(cell, "preempted", started, error=str(stopped))
    except Exception as error:
        if rank != 0:  # the job fails, and task 0 or the executor records it
            raise
        return _failed(cell, store, config, error, started)
    if record is None:  # a non-zero task of a multi-device SLURM job: task 0 logs and reports
        return _outcome(cell, "done", started)
    if record["status"] != "ok":  # diverged: execute recorded the failure and its cause
        store.log_event(cell.key, "failed", error=record["error"], divergence=record.get("divergence"))
        return _outcome(cell, "failed", started, error=record["error"])
    store.log_event(cell.key, "done", seconds=round(time.perf_counter() - started, 2))
    return _outcome(cell, "done", started)


def _train(cell: Cell, store: Store, config: RunConfig) -> dict[str, Any] | None:
    """Plan the cell's run again (its key must be the one the sweep planned), then train it here or as a command."""
    run = plan(config)
    if run.key != cell.key:
        raise BenchError(
            f"the run key of {cell.label} changed since the sweep was planned",
            "the code or data changed during the sweep; rerun it",
        )
    target = _wandb_target(cell)
    if relaunches(config):
        return launch(config, cell.key, store.root, target)
    return execute_logged(run, store.root, target, progress=cell.progress, checkpoint_every=cell.checkpoint_every)


def _failed(cell: Cell, store: Store, config: RunConfig, error: Exception, started: float) -> dict[str, Any]:
    """Record a run that raised as failed (never over an ok record) and log it to W&B."""
    failure = store.write_failure(cell.key, config.to_dict(), error)
    store.log_event(cell.key, "failed", error=f"{type(error).__name__}: {error}")
    if failure is not None:  # None: a rank failed after rank 0 recorded the run ok; that record stands
        wandb_logging.log_record(store.root, _wandb_target(cell), failure)
    return _outcome(cell, "failed", started, error=f"{type(error).__name__}: {error}")


def _wandb_target(cell: Cell) -> wandb_logging.RunLogging:
    group = wandb_logging.sweep_group(cell.group, cell.sweep_started)
    return wandb_logging.RunLogging(cell.wandb, group, cell.role, cell.group)


def _outcome(cell: Cell, status: str, started: float, **error: str) -> dict[str, Any]:
    return {"key": cell.key, "status": status, **error, "seconds": time.perf_counter() - started}


def manifest_entry(cell: Cell) -> dict[str, Any]:
    """A cell as `sweep.json` lists it."""
    return {"key": cell.key, "role": cell.role, "label": cell.label, "config": cell.config}


def _groups(spec: SweepSpec, tuned: bool) -> list[tuple[MethodSpec, str, str, str | None]]:
    """(method, model, task, budget) of every method with (tuned) or without a learning-rate grid."""
    return [
        (m, model, task, b)
        for m in spec.methods
        if bool(m.lrs) == tuned
        for model, task in spec.pairs
        for b in m.budgets or (None,)
    ]


def plan_cells(
    spec: SweepSpec, lrs_by_group: dict[Group, list[float | None]], role: str, common: dict[str, Any]
) -> list[Cell]:
    """Cells of each group for each of its lrs: at the tuning seeds for role "tuning", at every seed otherwise."""
    cells = []
    budgets: dict[tuple[Any, ...], str | None] = {}  # (method, model, task, seed, lr, parameter count) -> budget
    for method, model, task, budget in _groups(spec, tuned=True) + _groups(spec, tuned=False):
        for lr in lrs_by_group.get((method.name, model, task, budget), []):
            for seed in spec.tuning_seeds if role == "tuning" else spec.final_seeds(method.name, budget):
                config = spec.run_config(method, model, task, budget, seed, lr, tuning=role == "tuning")
                run = plan(config)
                same = budgets.setdefault((method.name, model, task, seed, lr, run.requested), budget)
                if run.requested is not None and same != budget:
                    raise BenchError(
                        f"budgets {same} and {budget} of {method.name} resolve to the same count on {model}"
                        f" ({run.requested:,} parameters)",
                        "list each budget once (a percentage and a count can name the same budget)",
                    )
                cells.append(Cell(key=run.key, config=config.to_dict(), role=role, requested=run.requested, **common))
    return cells


@dataclass
class Phase1:
    """The first phase of a sweep and what the second needs: the groups tuned on their own grid, those whose lr is
    interpolated, and every tuned method's budgets as parameter counts."""

    cells: list[Cell]
    tuned: list[Group]
    interpolated: list[Group]
    counts: dict[Group, int | None]

    def part(self, model: str, task: str) -> Phase1:
        """The share of one (model, task) pair."""
        return Phase1(
            [c for c in self.cells if (c.config["model"], c.config["task"]) == (model, task)],
            [group for group in self.tuned if group[1:3] == (model, task)],
            [group for group in self.interpolated if group[1:3] == (model, task)],
            {group: count for group, count in self.counts.items() if group[1:3] == (model, task)},
        )


def expand(spec: SweepSpec, common: dict[str, Any]) -> Phase1:
    """Phase-1 cells (tuning grids at the tuning seeds, every seed of untuned methods) and the tuned groups.

    Also plans every later cell once (with the first lr of its grid), so bad input fails before anything runs.
    """
    untuned = {(m.name, model, t, b): [m.lr_at(b)] for m, model, t, b in _groups(spec, tuned=False)}
    grids = {(m.name, model, t, b): list(m.lrs) for m, model, t, b in _groups(spec, tuned=True)}
    later = plan_cells(spec, {group: lrs[:1] for group, lrs in grids.items()}, "final", common)
    counts = {group_of(c.config): c.requested for c in later}
    points = tuning_points(counts, spec.tuning_budgets)
    tuned = {group: lrs for group, lrs in grids.items() if group in points}
    cells = plan_cells(spec, untuned, "final", common) + plan_cells(spec, tuned, "tuning", common)
    return Phase1(cells, list(tuned), [group for group in grids if group not in points], counts)
