"""Does the validation split pick the rate the test set would? Pick-against-test-best agreement of learning-rate tuning.

The sweep picks each tuned group's rate (method, model, task, budget) on the validation split and never looks at test
scores (bench.sweep.tuning). The tuning runs' records hold their test scores all the same, so the report can check
the validation split as a proxy: for each group whose grid has two rates or more that the pick could choose (status
"ok": not failed, not collapsed), the rate with the best test score at the tuning seeds (their mean when several)
against the picked one, and the cost of the pick, best test score minus the picked rate's, in points. The pick agrees
when its test score is the best (a rate tied with it on test counts as agreeing). The runs are the tuning runs, so at
the tuning settings (`tuning_settings` in tuning.json, e.g. a shorter schedule), not the final runs'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.report.plots import display_name
from bench.report.tables import Table, plain_table


@dataclass(frozen=True)
class PickCheck:
    """One tuned group's pick against the rate that scores best on test."""

    model: str
    task: str
    method: str
    budget: str
    rates: int  # rates of the grid the pick could choose and whose runs have test scores
    picked_lr: float
    picked_test: float  # points, mean over the tuning seeds
    best_lr: float  # the first rate of the grid with the best test score
    best_test: float

    @property
    def agrees(self) -> bool:
        return self.picked_test == self.best_test

    @property
    def cost(self) -> float:
        """Test points lost by picking on validation (0 when the pick agrees)."""
        return self.best_test - self.picked_test


def _run_keys(point: dict[str, Any]) -> list[str]:
    """A grid point's run keys: one per tuning seed (`runs`), or the single `run_key` of stores tuned at one seed."""
    return [run["run_key"] for run in point["runs"]] if "runs" in point else [point["run_key"]]


def _test_score(keys: list[str], read: Callable[[str], dict[str, Any] | None]) -> float | None:
    """The mean test primary metric of the runs `keys`, in points; None when one has no ok record or no score."""
    scores = []
    for key in keys:
        record = read(key)
        if record is None or record.get("status") != "ok":
            return None
        score = record["metrics"]["test"].get(record["task"]["primary_metric"])
        if score is None:
            return None
        scores.append(100 * score)
    return sum(scores) / len(scores)


def pick_check(entry: dict[str, Any], read: Callable[[str], dict[str, Any] | None]) -> PickCheck | None:
    """The check of one `tuning.json` entry, reading the tuning runs' records through `read` (run key -> record or
    None); None for an interpolated entry, one without a pick, or a grid with fewer than two scored rates."""
    if "grid" not in entry or entry["chosen_lr"] is None:
        return None
    tests = {point["lr"]: _test_score(_run_keys(point), read) for point in entry["grid"] if point["status"] == "ok"}
    tests = {lr: score for lr, score in tests.items() if score is not None}
    if len(tests) < 2 or entry["chosen_lr"] not in tests:
        return None
    best = max(tests, key=tests.get)  # max keeps the first of equal scores
    return PickCheck(
        model=entry["model"],
        task=entry["task"],
        method=entry["method"],
        budget=entry["budget"] or "all",
        rates=len(tests),
        picked_lr=entry["chosen_lr"],
        picked_test=tests[entry["chosen_lr"]],
        best_lr=best,
        best_test=tests[best],
    )


def pick_checks(tuning: dict[str, Any], read: Callable[[str], dict[str, Any] | None]) -> list[PickCheck]:
    """The check of every tuned group of `tuning` (the content of tuning.json) that `pick_check` can make."""
    return [check for entry in tuning["cells"] if (check := pick_check(entry, read)) is not None]


CAPTION = (
    "Each tuned grid's rate picked on the validation split against the rate with the best test score, both read from "
    "the tuning runs (tuning seeds and settings); test scores in points; cost: best test score minus the pick's. "
    "Only rates the pick could choose (not failed, not collapsed) are compared."
)
COUNT = "{model} · {task}: the pick is the test-best rate in {agree} of {grids} grids; cost mean {mean:.2f}, largest {largest:.2f} points."


def pick_table(checks: list[PickCheck]) -> Table:
    """The checks as a table, with a note per (model, task) counting the grids where the pick agrees."""
    header = ["Model", "Task", "Method", "Budget", "Rates", "Picked lr: test", "Test-best lr: test", "Agrees", "Cost"]
    rows = [
        [
            check.model,
            check.task,
            display_name(check.method),
            check.budget,
            str(check.rates),
            f"{check.picked_lr:g}: {check.picked_test:.1f}",
            f"{check.best_lr:g}: {check.best_test:.1f}",
            "yes" if check.agrees else "no",
            f"{check.cost:.2f}",
        ]
        for check in checks
    ]
    table = plain_table("tuning-picks", "Validation pick against test best", CAPTION, rows, header)
    frame = pd.DataFrame(
        [{"model": c.model, "task": c.task, "agrees": c.agrees, "cost": c.cost} for c in checks],
        columns=["model", "task", "agrees", "cost"],
    )
    for (model, task), group in frame.groupby(["model", "task"], sort=True):
        table.notes.append(
            COUNT.format(
                model=model,
                task=task,
                agree=int(group["agrees"].sum()),
                grids=len(group),
                mean=group["cost"].mean(),
                largest=group["cost"].max(),
            )
        )
    return table
