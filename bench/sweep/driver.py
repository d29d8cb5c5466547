"""Run a sweep: expand the spec into cells, skip what the store holds, run the rest, tune learning rates fairly.

Order of work:
1. every cell is planned (config checked, data read, content key computed) before anything runs;
2. phase 1 runs the tuning cells (each lr of the grid at each tuning seed, for every method/budget/task) and every
   cell of untuned methods;
3. the learning rate with the highest VALIDATION score (the mean over the tuning seeds; a rate that failed at any of
   them, or whose validation predictions collapsed onto one answer, is out) is chosen per (method, budget, task)
   (ties: the earlier lr of the grid); the grid, every score and the choice go to `tuning.json`. With
   `tuning.budgets: n` only n budgets per method are tuned (evenly spread, both ends) and the others take the chosen
   lrs interpolated in log-lr against log-budget (clamped at the ends), recorded in `tuning.json` with the points
   they came from. With `tuning.extend: n`, a pick at an end of its grid first gets one more rate beyond that end,
   run and compared in turn, up to n times per group, and a grid where every rate failed or collapsed gets one below
   its low end (`beyond_the_edge`);
4. phase 2 runs the remaining seeds at the chosen lr (the tuning seeds' runs at that lr are already stored) and
   every seed of the interpolated budgets.

Phases 1 and 2 run for one (model, task) pair after the other, in the spec's order: a long study that stops early
leaves whole results for its first tasks rather than tuning runs of all of them.

Each cell runs under its key's file lock and re-checks the store after acquiring it, so two sweeps on one store never
run a cell twice. A failed run is recorded (status "failed") and retried by the next sweep. A cell whose worker died
is retried in a fresh pool, then left for the next sweep (`interrupted`); a failure is never written over an ok record.
Corrupt files found in the store when a sweep starts are moved to `<store>/quarantine/`, and the sweep goes on.
A cell that Lightning would run on several local processes (DDP, FSDP) runs as a command of its own, which Lightning
replicates instead of the sweep (`bench.sweep.distributed`); the worker holds its lock and logs its record to W&B.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from tqdm import tqdm

from bench.records.store import Store, now
from bench.report import wandb_logging
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.plan import plan
from bench.sweep.distributed import launch, relaunches
from bench.sweep.executors import make_executor
from bench.sweep.spec import MethodSpec, SweepSpec
from core.errors import BenchError

MIN_EDGE_GRID = 3  # a two-point grid has no inside: every pick is at an end
UNSTABLE = ("collapsed", "failed")  # grid points whose training never gave a usable model


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
        store.log_event(cell.key, "started", label=cell.label)
        config = RunConfig(**cell.config)
        try:
            run = plan(config)
            if run.key != cell.key:
                raise BenchError(
                    f"the run key of {cell.label} changed since the sweep was planned",
                    "the code or data changed during the sweep; rerun it",
                )
            record = (
                launch(config, cell.key, store.root)
                if relaunches(config)
                else execute(run, store.root, progress=cell.progress)
            )
        except Exception as error:
            if rank != 0:  # the job fails, and task 0 or the executor records it
                raise
            failure = store.write_failure(cell.key, config.to_dict(), error)
            store.log_event(cell.key, "failed", error=f"{type(error).__name__}: {error}")
            if failure is not None:  # None: a rank failed after rank 0 recorded the run ok; that record stands
                wandb_logging.log_record(
                    store.root,
                    cell.wandb,
                    failure,
                    wandb_logging.sweep_group(cell.group, cell.sweep_started),
                    cell.role,
                    cell.group,
                )
            return {
                "key": cell.key,
                "status": "failed",
                "error": f"{type(error).__name__}: {error}",
                "seconds": time.perf_counter() - started,
            }
        if record is None:  # a non-zero task of a multi-device SLURM job: task 0 logs and reports
            return {"key": cell.key, "status": "done", "seconds": time.perf_counter() - started}
        wandb_logging.log_record(
            store.root,
            cell.wandb,
            record,
            wandb_logging.sweep_group(cell.group, cell.sweep_started),
            cell.role,
            cell.group,
        )
        if record["status"] != "ok":  # diverged: execute recorded the failure and its cause
            store.log_event(cell.key, "failed", error=record["error"], divergence=record.get("divergence"))
            return {
                "key": cell.key,
                "status": "failed",
                "error": record["error"],
                "seconds": time.perf_counter() - started,
            }
        store.log_event(cell.key, "done", seconds=round(time.perf_counter() - started, 2))
        return {"key": cell.key, "status": "done", "seconds": time.perf_counter() - started}
    finally:
        if lock is not None:
            lock.release()


@dataclass
class SweepResult:
    """What happened: outcome per key, the tuning choices, where things are."""

    store: Path
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    untuned: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> Counter:
        return Counter(outcome["status"] for outcome in self.outcomes.values())

    @property
    def ok(self) -> bool:
        return not self.failed and not self.untuned

    @property
    def failed(self) -> list[str]:
        return [
            key for key, outcome in self.outcomes.items() if outcome["status"] in ("failed", "crashed", "interrupted")
        ]


def _groups(spec: SweepSpec, tuned: bool) -> list[tuple[MethodSpec, str, str, str | None]]:
    """(method, model, task, budget) of every method with (tuned) or without a learning-rate grid."""
    return [
        (m, model, task, b)
        for m in spec.methods
        if bool(m.lrs) == tuned
        for model, task in spec.pairs
        for b in m.budgets or (None,)
    ]


def group_key(method: str, model: str, task: str, budget: str | None) -> tuple[str, str, str, str | None]:
    return (method, model, task, budget)


def _plan_cells(
    spec: SweepSpec, lrs_by_group: dict[tuple, list[float | None]], role: str, common: dict[str, Any]
) -> list[Cell]:
    """Cells of each group for each of its lrs: at the tuning seeds for role "tuning", at every seed otherwise."""
    cells = []
    budgets: dict[tuple[Any, ...], str | None] = {}  # (method, model, task, seed, lr, parameter count) -> budget
    for method, model, task, budget in _groups(spec, tuned=True) + _groups(spec, tuned=False):
        for lr in lrs_by_group.get(group_key(method.name, model, task, budget), []):
            for seed in spec.tuning_seeds if role == "tuning" else spec.seeds:
                config = spec.run_config(method, model, task, budget, seed, lr, tuning=role == "tuning")
                run = plan(config)
                same = budgets.setdefault((method.name, model, task, seed, lr, run.requested), budget)
                if run.requested is not None and same != budget:
                    raise BenchError(
                        f"budgets {same} and {budget} of {method.name} resolve to the same count on {model} ({run.requested:,} parameters)",
                        "list each budget once (a percentage and a count can name the same budget)",
                    )
                cells.append(Cell(key=run.key, config=config.to_dict(), role=role, requested=run.requested, **common))
    return cells


@dataclass
class Phase1:
    """The first phase of a sweep and what the second needs: the groups tuned on their own grid, those whose lr is
    interpolated, and every tuned method's budgets as parameter counts."""

    cells: list[Cell]
    tuned: list[tuple[str, str, str, str | None]]
    interpolated: list[tuple[str, str, str, str | None]]
    counts: dict[tuple[str, str, str, str | None], int | None]

    def part(self, model: str, task: str) -> Phase1:
        """The share of one (model, task) pair."""
        return Phase1(
            [c for c in self.cells if (c.config["model"], c.config["task"]) == (model, task)],
            [group for group in self.tuned if group[1:3] == (model, task)],
            [group for group in self.interpolated if group[1:3] == (model, task)],
            {group: count for group, count in self.counts.items() if group[1:3] == (model, task)},
        )


def tuning_points(counts: dict[tuple, int | None], per_series: int | None) -> set[tuple]:
    """The groups tuned on their grid: for each (method, model, task), `per_series` of its budgets spread evenly over
    the budgets sorted by count, both ends included; every group if `per_series` is None or covers them all."""
    series: dict[tuple, list[tuple[int, tuple]]] = defaultdict(list)
    for group, count in counts.items():
        series[group[:3]].append((count or 0, group))
    chosen = set()
    for points in series.values():
        points.sort()
        if per_series is None or len(points) <= per_series:
            chosen.update(group for _, group in points)
        else:
            chosen.update(points[round(i * (len(points) - 1) / (per_series - 1))][1] for i in range(per_series))
    return chosen


def interpolate_lr(count: int, anchors: list[tuple[int, float]]) -> float:
    """The lr at `count` from (count, lr) anchors, linear in log-lr against log-count, clamped at the end anchors,
    rounded to 3 significant digits."""
    anchors = sorted(anchors)
    x = math.log(count)
    xs, ys = [math.log(c) for c, _ in anchors], [math.log(lr) for _, lr in anchors]
    if x <= xs[0] or len(anchors) == 1:
        y = ys[0]
    elif x >= xs[-1]:
        y = ys[-1]
    else:
        right = next(i for i, xi in enumerate(xs) if xi >= x)
        t = (x - xs[right - 1]) / (xs[right] - xs[right - 1])
        y = ys[right - 1] + t * (ys[right] - ys[right - 1])
    return float(f"{math.exp(y):.3g}")


def expand(spec: SweepSpec, common: dict[str, Any]) -> Phase1:
    """Phase-1 cells (tuning grids at the tuning seeds, every seed of untuned methods) and the tuned groups.

    Also plans every later cell once (with the first lr of its grid), so bad input fails before anything runs.
    """
    untuned = {group_key(m.name, model, t, b): [m.lr_at(b)] for m, model, t, b in _groups(spec, tuned=False)}
    grids = {group_key(m.name, model, t, b): list(m.lrs) for m, model, t, b in _groups(spec, tuned=True)}
    later = _plan_cells(spec, {group: lrs[:1] for group, lrs in grids.items()}, "final", common)
    counts = {_cell_group(c): c.requested for c in later}
    points = tuning_points(counts, spec.tuning_budgets)
    tuned = {group: lrs for group, lrs in grids.items() if group in points}
    cells = _plan_cells(spec, untuned, "final", common) + _plan_cells(spec, tuned, "tuning", common)
    return Phase1(cells, list(tuned), [group for group in grids if group not in points], counts)


def choose_lrs(spec: SweepSpec, store: Store, phase1: Phase1) -> dict[str, Any]:
    """Pick each tuned group's lr by its mean validation score over the tuning seeds (ties: earlier in the grid; a
    rate that failed at any tuning seed is out), interpolate the others; the content of tuning.json."""
    entries = []
    for method, model, task, budget in _groups(spec, tuned=True):
        group = group_key(method.name, model, task, budget)
        if group not in phase1.tuned:
            continue
        runs_by_lr: dict[float, list[dict[str, Any]]] = {}
        for cell in phase1.cells:
            if cell.role == "tuning" and _cell_group(cell) == group:
                runs_by_lr.setdefault(cell.config["lr"], []).append(_tuning_run(store, cell))
        grid = [_grid_point(lr, runs) for lr, runs in runs_by_lr.items()]
        scored = [point for point in grid if point["status"] == "ok"]
        best = max(scored, key=lambda point: point["validation"], default=None)  # max keeps the first of equals
        entries.append(
            {"method": method.name, "model": model, "task": task, "budget": budget, "seeds": list(spec.tuning_seeds)}
            | {"grid": grid, "chosen_lr": best["lr"] if best else None}
            | {"chosen_keys": [run["run_key"] for run in best["runs"]] if best else []}
        )
    for group in phase1.interpolated:
        anchors = [
            {"budget": e["budget"], "count": phase1.counts[_entry_group(e)], "lr": e["chosen_lr"]}
            for e in entries
            if _entry_group(e)[:3] == group[:3] and e["chosen_lr"] is not None
        ]
        lr = interpolate_lr(phase1.counts[group], [(a["count"], a["lr"]) for a in anchors]) if anchors else None
        entries.append(
            dict(zip(("method", "model", "task", "budget"), group))
            | {"seeds": list(spec.tuning_seeds), "interpolated_from": anchors, "chosen_lr": lr, "chosen_keys": []}
        )
    return {
        "selection": "highest validation-split score of the task's primary metric, averaged over the tuning seeds (a rate that failed, or whose validation predictions collapsed onto one answer, at any of them is not chosen); ties go to the earlier lr of the grid; test scores are never used",
        "extension": f"a pick at an end of its grid (3 or more rates), or a grid where every rate failed or collapsed (then below its low end), got one more rate one step beyond that end, up to {spec.tuning_extend} times per group; added rates follow the grid in `grid`"
        if spec.tuning_extend
        else None,
        "interpolation": None
        if spec.tuning_budgets is None
        else f"tuned at {spec.tuning_budgets} budgets per method (evenly spread, both ends); the other budgets take the chosen lrs interpolated linearly in log-lr against log-budget, clamped at the ends, rounded to 3 significant digits",
        "tuning_seeds": list(spec.tuning_seeds),
        "tuning_settings": {
            f"{model} {task}": settings["tuning"]
            for (model, task), settings in spec.task_training.items()
            if settings.get("tuning")
        },
        "grid_size": max((len(m.lrs) for m in spec.methods), default=0),
        "cells": entries,
    }


def _tuning_run(store: Store, cell: Cell) -> dict[str, Any]:
    """A tuning run's seed, key, status and validation score. An ok run whose validation predictions collapse onto one
    answer (bench.collapse) has status "collapsed": its score is kept for the record but never chosen."""
    from bench.records.collapse import run_collapses

    record = store.read(cell.key) or {"status": "missing"}
    status, score = record["status"], None
    if status == "ok":
        score = record["metrics"]["validation"][record["task"]["primary_metric"]]
        if run_collapses(store.predictions_path(cell.key), split="validation"):
            status = "collapsed"
    return {"seed": cell.config["seed"], "run_key": cell.key, "status": status, "validation": score}


def _grid_point(lr: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One rate of a grid: its runs at the tuning seeds, their status (the first that is not ok) and mean score (None
    when a run has none)."""
    status = next((run["status"] for run in runs if run["status"] != "ok"), "ok")
    scores = [run["validation"] for run in runs]
    mean = None if None in scores else sum(scores) / len(scores)
    return {"lr": lr, "status": status, "validation": mean, "runs": runs}


def _cell_group(cell: Cell) -> tuple[str, str, str, str | None]:
    return group_key(*(cell.config[f] for f in ("method", "model", "task", "budget")))


def beyond_the_edge(entry: dict[str, Any]) -> float | None:
    """The rate one grid step outside the end where a tuning entry picked (the ratio between that end and its
    neighbour, 3 significant digits), or None if the pick is inside its grid or the grid has fewer than 3 rates.

    A grid where every rate collapsed or failed steps below its low end: at every rate training was unstable."""
    points = entry.get("grid", [])
    grid = sorted(point["lr"] for point in points)
    if len(grid) < MIN_EDGE_GRID:
        return None
    if entry["chosen_lr"] == grid[0] or all(point["status"] in UNSTABLE for point in points):
        beyond = grid[0] ** 2 / grid[1]
    elif entry["chosen_lr"] == grid[-1]:
        beyond = grid[-1] ** 2 / grid[-2]
    else:
        return None
    return float(f"{beyond:.3g}")


def edge_cells(spec: SweepSpec, store: Store, part: Phase1, common: dict[str, Any]) -> list[Cell]:
    """Tuning cells one rate beyond each grid end that a group picked (see `beyond_the_edge`)."""
    beyond = {}
    for entry in choose_lrs(spec, store, part)["cells"]:
        lr = beyond_the_edge(entry)  # None for a pick inside its grid
        if lr is not None:
            beyond[_entry_group(entry)] = [lr]
    return _plan_cells(spec, beyond, "tuning", common)


def _entry_group(entry: dict[str, Any]) -> tuple[str, str, str, str | None]:
    return group_key(entry["method"], entry["model"], entry["task"], entry["budget"])


def require_full_data(spec: SweepSpec) -> None:
    """BenchError if the spec needs full training sets but would read the committed subsets."""
    from tasks.data_source import DATA_ENV, DataSource

    source = DataSource(spec.training.get("data_dir"))
    if source.kind != "data-dir":
        raise BenchError(
            f"spec {spec.name} needs the full training sets, but the data would come from the committed subsets ({source.root})",
            f"point {DATA_ENV} (or training.data_dir in the spec) at a folder laid out like tasks/data/ with the full files",
        )


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    executor: str = "local",
    workers: int = 1,
    progress: bool = True,
    isolate: bool = False,
) -> SweepResult:
    """Run `spec` into the store at `out` (see the module docstring); returns what happened."""
    from core.files import check_writable

    store = Store(out)
    check_writable(store.root)
    if spec.full_data:
        require_full_data(spec)
    started = time.perf_counter()
    common = {
        "store": str(store.root),
        "group": spec.name,
        "wandb": spec.wandb,
        "sweep_started": now(),
        "progress": progress and workers == 1 and executor == "local" and not isolate,
    }
    phase1 = expand(spec, common)
    devices = spec.training.get("devices", "1")
    runner = make_executor(
        executor, workers, store.root, spec.slurm, int(devices) if str(devices).isdigit() else 1, isolate
    )
    for moved in store.quarantine():
        print(
            f"bench: warning: {moved.name} in {store.root} is corrupt; moved to {moved} (its cell is recomputed)",
            file=sys.stderr,
        )
    result = SweepResult(store=store.root)
    remaining_seeds = tuple(seed for seed in spec.seeds if seed not in spec.tuning_seeds)
    total = len(phase1.cells) + len(phase1.tuned) * len(remaining_seeds) + len(phase1.interpolated) * len(spec.seeds)
    manifest = {
        "name": spec.name,
        "digest": spec.digest,
        "spec": spec.source,
        "created_at": common["sweep_started"],
        "tuning_seeds": list(spec.tuning_seeds),
    }
    bar = tqdm(
        total=total, desc=f"sweep {spec.name}", unit="run", disable=not progress, file=sys.stderr, dynamic_ncols=True
    )
    listed = {pair: [_manifest_entry(c) for c in phase1.part(*pair).cells] for pair in spec.pairs}
    choices: list[dict[str, Any]] = []
    with bar:
        store.write_meta("sweep.json", manifest | {"cells": [entry for pair in spec.pairs for entry in listed[pair]]})
        for pair in spec.pairs:
            part = phase1.part(*pair)
            _run_phase(runner, part.cells, result, bar)
            if not part.tuned:
                continue
            for _ in range(spec.tuning_extend):
                extra = edge_cells(spec, store, part, common)
                if not extra:
                    break
                part.cells += extra
                bar.total += len(extra)
                listed[pair] = [_manifest_entry(c) for c in part.cells]
                store.write_meta(
                    "sweep.json", manifest | {"cells": [entry for pair in spec.pairs for entry in listed[pair]]}
                )
                _run_phase(runner, extra, result, bar)
            tuning = choose_lrs(spec, store, part)
            choices += tuning["cells"]
            store.write_meta("tuning.json", tuning | {"cells": choices})
            chosen = {
                group_key(e["method"], e["model"], e["task"], e["budget"]): [e["chosen_lr"]]
                for e in tuning["cells"]
                if e["chosen_lr"] is not None
            }
            unusable = [group for group in [*part.tuned, *part.interpolated] if group not in chosen]
            result.untuned += [" ".join(str(piece or "all") for piece in group) for group in unusable]
            finals = _plan_cells(spec, chosen, "final", common)
            chosen_runs = {key for e in tuning["cells"] for key in e["chosen_keys"]}
            reused = chosen_runs & {c.key for c in finals}  # the same settings as a final run
            phase2 = [c for c in finals if c.key not in reused]
            # the total counted the tuning seeds' final runs as reused; unusable groups and tuning settings change that
            bar.total += len(phase2) - len(part.tuned) * len(remaining_seeds) - len(part.interpolated) * len(spec.seeds)
            listed[pair] = [
                _manifest_entry(c)
                for c in [
                    *(c for c in part.cells if c.role != "tuning"),
                    *(
                        dataclasses.replace(c, role="tuning+final" if c.key in reused else "tuning")
                        for c in part.cells
                        if c.role == "tuning"
                    ),
                    *phase2,
                ]
            ]
            store.write_meta(
                "sweep.json", manifest | {"cells": [entry for pair in spec.pairs for entry in listed[pair]]}
            )
            _run_phase(runner, phase2, result, bar)
    result.seconds = time.perf_counter() - started
    return result


def _manifest_entry(cell: Cell) -> dict[str, Any]:
    return {"key": cell.key, "role": cell.role, "label": cell.label, "config": cell.config}


def _run_phase(runner: Any, cells: list[Cell], result: SweepResult, bar: tqdm) -> None:
    """Run `cells`; those another worker holds are retried at the end, waiting for the lock."""
    by_key = {cell.key: cell for cell in cells}
    for attempt in (cells, None):
        if attempt is None:
            attempt = [
                dataclasses.replace(by_key[key], wait=True)
                for key, outcome in result.outcomes.items()
                if outcome["status"] == "busy" and key in by_key
            ]
        for outcome in runner.map(run_cell, attempt, _crashed, _interrupted):
            result.outcomes[outcome["key"]] = outcome
            result.labels[outcome["key"]] = by_key[outcome["key"]].label
            if outcome["status"] != "busy":
                bar.update(1)
                bar.set_postfix_str(f"{outcome['status']}: {by_key[outcome['key']].label}")


def _crashed(cell: Cell, error: BaseException) -> dict[str, Any]:
    """The cell's own process died without returning: record the failure (never over an ok record) for the next sweep."""
    store = Store(cell.store)
    if store.write_failure(cell.key, cell.config, error) is None:
        return {"key": cell.key, "status": "skipped"}
    store.log_event(cell.key, "failed", error=f"worker died: {type(error).__name__}: {error}")
    return {"key": cell.key, "status": "crashed", "error": f"{type(error).__name__}: {error}"}


def _interrupted(cell: Cell, error: BaseException) -> dict[str, Any]:
    """A cell that dying workers kept from finishing: nothing is recorded, the next sweep runs it."""
    if Store(cell.store).is_done(cell.key):
        return {"key": cell.key, "status": "skipped"}
    Store(cell.store).log_event(cell.key, "interrupted", error=f"{type(error).__name__}: {error}")
    return {"key": cell.key, "status": "interrupted", "error": f"{type(error).__name__}: {error}"}


def overhead_text(store: Store, keys: list[str]) -> str | None:
    """Where the time of the runs just done went: medians of wall time, training steps, and every other phase."""
    records = [
        record for record in map(store.read, keys) if record and record["status"] == "ok" and "timings" in record
    ]
    if not records:
        return None
    overheads = [record["wall_time_s"] - record["cost"]["train_seconds"] for record in records]
    phases = {
        name: median(
            record["timings"][name] - (record["cost"]["train_seconds"] if name == "fit" else 0) for record in records
        )
        for name in records[0]["timings"]
    }
    parts = ", ".join(f"{'fit set-up' if name == 'fit' else name} {seconds:.1f}" for name, seconds in phases.items())
    return (
        f"per run (median of {len(records)}): {median(r['wall_time_s'] for r in records):.1f}s, of which training steps "
        f"{median(r['cost']['train_seconds'] for r in records):.1f}s and overhead {median(overheads):.1f}s ({parts}; seconds)"
    )


def summary_text(result: SweepResult) -> str:
    """The closing summary: counts, failures and where everything is."""
    counts = result.counts()
    store = result.store
    lines = [
        f"sweep finished in {result.seconds:.0f}s: {counts['done']} run, {counts['skipped']} already stored, {counts['failed'] + counts['crashed']} failed"
        + (f", {counts['interrupted']} interrupted by a dying worker" if counts["interrupted"] else "")
        + (f", {len(result.untuned)} cell(s) without a usable learning rate" if result.untuned else ""),
        f"records: {store}/<run_key>.json (+ .predictions.jsonl); cells: {store / 'sweep.json'}; events: {store / 'events.jsonl'}",
    ]
    overhead = overhead_text(
        Store(store), [key for key, outcome in result.outcomes.items() if outcome["status"] == "done"]
    )
    if overhead:
        lines.append(overhead)
    if (store / "tuning.json").is_file():
        lines.append(f"learning-rate grids and choices: {store / 'tuning.json'}")
    for key in result.failed:
        outcome = result.outcomes[key]
        where = "not recorded" if outcome["status"] == "interrupted" else f"record {store / (key + '.json')}"
        lines.append(
            f"{outcome['status'].upper()} {result.labels.get(key, key)}: {outcome.get('error', '')[:300]} ({where}; a rerun retries it)"
        )
    for cell in result.untuned:
        lines.append(f"NOT RUN {cell}: every learning rate of its grid failed, so its other seeds were not run")
    hint = wandb_logging.sync_hint(store)
    if hint:
        lines.append(hint)
    lines.append(f"next: bench report {store}")
    return "\n".join(lines)
