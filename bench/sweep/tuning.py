"""The learning-rate policy of a sweep: which rates are tried, which one is picked, and what `tuning.json` says.

- Grid per tuning budget. Each tuned group (method, model, task, budget) runs every rate of its method's grid at each
  tuning seed. With `tuning.budgets: n` only n budgets per (method, model, task) are tuned, spread evenly over the
  budgets sorted by parameter count, both ends included (`tuning_points`).
- Collapse-aware pick. A grid point's score is its mean VALIDATION score over the tuning seeds (test scores are never
  used). A rate is out if its run at any tuning seed failed, is missing, or collapsed: its validation predictions give
  one answer to (nearly) every example (`bench.records.collapse`). The highest remaining mean wins; ties go to the
  earlier rate of the grid (`choose_lrs`). A group where every rate is out has no rate, and its other seeds are not run.
- Edge extension. With `tuning.extend: n`, a pick at an end of a grid of at least MIN_EDGE_GRID rates gets one more
  rate one grid step beyond that end (the ratio between that end and its neighbour), which is run at the tuning seeds
  and compared in turn, up to n times per group; a grid where every rate is UNSTABLE (collapsed or failed) steps below
  its low end (`beyond_the_edge`, `edge_lrs`).
- Interpolation. A budget that is not tuned takes the rate interpolated from the picks of its tuned budgets (and the
  rates of the budgets interpolated before it): linear in log-lr against log-budget (parameter count), clamped at the
  end anchors, rounded to 3 significant digits (`interpolate_lr`); `tuning.json` names the anchors it came from.

The sweep (bench.sweep.driver) runs the cells; this module only reads their records and decides.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bench.records.collapse import run_collapses
from bench.records.store import Store

if TYPE_CHECKING:  # annotations only: the sweep's spec and cells import the report layer, this module must not
    from bench.sweep.cells import Cell, Phase1
    from bench.sweep.spec import SweepSpec

Group = tuple[str, str, str, str | None]  # (method, model, task, budget): what gets one learning rate
MIN_EDGE_GRID = 3  # a two-point grid has no inside: every pick is at an end
UNSTABLE = ("collapsed", "failed")  # grid points whose training never gave a usable model
SELECTION = (
    "highest validation-split score of the task's primary metric, averaged over the tuning seeds (a rate that failed,"
    " or whose validation predictions collapsed onto one answer, at any of them is not chosen); ties go to the earlier"
    " lr of the grid; test scores are never used"
)
EXTENSION = (
    "a pick at an end of its grid (3 or more rates), or a grid where every rate failed or collapsed (then below its low"
    " end), got one more rate one step beyond that end, up to {extend} times per group; added rates follow the grid in"
    " `grid`"
)
INTERPOLATION = (
    "tuned at {budgets} budgets per method (evenly spread, both ends); the other budgets take the chosen lrs"
    " interpolated linearly in log-lr against log-budget, clamped at the ends, rounded to 3 significant digits"
)


def group_of(fields: Mapping[str, Any]) -> Group:
    """The group of a run config or a `tuning.json` entry."""
    return (fields["method"], fields["model"], fields["task"], fields["budget"])


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


def _tuning_run(store: Store, cell: Cell) -> dict[str, Any]:
    """A tuning run's seed, key, status and validation score. An ok run whose validation predictions collapse onto one
    answer (bench.records.collapse) has status "collapsed": its score is kept for the record but never chosen."""
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


def _tuned_entry(spec: SweepSpec, store: Store, phase1: Phase1, group: Group) -> dict[str, Any]:
    """A tuned group's grid (its rates in the order they were added) and the rate it picks."""
    runs_by_lr: dict[float, list[dict[str, Any]]] = {}
    for cell in phase1.cells:
        if cell.role == "tuning" and group_of(cell.config) == group:
            runs_by_lr.setdefault(cell.config["lr"], []).append(_tuning_run(store, cell))
    grid = [_grid_point(lr, runs) for lr, runs in runs_by_lr.items()]
    scored = [point for point in grid if point["status"] == "ok"]
    best = max(scored, key=lambda point: point["validation"], default=None)  # max keeps the first of equals
    method, model, task, budget = group
    return (
        {"method": method, "model": model, "task": task, "budget": budget, "seeds": list(spec.tuning_seeds)}
        | {"grid": grid, "chosen_lr": best["lr"] if best else None}
        | {"chosen_keys": [run["run_key"] for run in best["runs"]] if best else []}
    )


def _interpolated_entry(spec: SweepSpec, phase1: Phase1, earlier: list[dict[str, Any]], group: Group) -> dict[str, Any]:
    """An untuned budget's rate, interpolated from the rates of its series' `earlier` entries (the tuned budgets, and
    the budgets interpolated before it); None without any."""
    anchors = [
        {"budget": e["budget"], "count": phase1.counts[group_of(e)], "lr": e["chosen_lr"]}
        for e in earlier
        if group_of(e)[:3] == group[:3] and e["chosen_lr"] is not None
    ]
    lr = interpolate_lr(phase1.counts[group], [(a["count"], a["lr"]) for a in anchors]) if anchors else None
    return dict(zip(("method", "model", "task", "budget"), group)) | {
        "seeds": list(spec.tuning_seeds),
        "interpolated_from": anchors,
        "chosen_lr": lr,
        "chosen_keys": [],
    }


def choose_lrs(spec: SweepSpec, store: Store, phase1: Phase1) -> dict[str, Any]:
    """Pick each tuned group's lr, interpolate the others (see the module docstring); the content of tuning.json."""
    entries = [_tuned_entry(spec, store, phase1, group) for group in phase1.tuned]
    for group in phase1.interpolated:
        entries.append(_interpolated_entry(spec, phase1, entries, group))
    return {
        "selection": SELECTION,
        "extension": EXTENSION.format(extend=spec.tuning_extend) if spec.tuning_extend else None,
        "interpolation": None if spec.tuning_budgets is None else INTERPOLATION.format(budgets=spec.tuning_budgets),
        "tuning_seeds": list(spec.tuning_seeds),
        "tuning_settings": {
            f"{model} {task}": settings["tuning"]
            for (model, task), settings in spec.task_training.items()
            if settings.get("tuning")
        },
        "grid_size": max((len(m.lrs) for m in spec.methods), default=0),
        "cells": entries,
    }


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


def edge_lrs(spec: SweepSpec, store: Store, phase1: Phase1) -> dict[Group, list[float]]:
    """The rate beyond the grid end that each group picked (see `beyond_the_edge`); groups that picked inside are
    left out. The sweep runs them as tuning cells."""
    beyond = {}
    for entry in choose_lrs(spec, store, phase1)["cells"]:
        lr = beyond_the_edge(entry)  # None for a pick inside its grid
        if lr is not None:
            beyond[group_of(entry)] = [lr]
    return beyond
