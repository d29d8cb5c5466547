"""Convergence by rule: has a cell's validation score stopped rising by the end of its training?

The rule, for every cell (model, task, method, budget) whose runs record a validation curve (`--eval-every`):

- Each seed's gain is its validation primary metric at the final evaluation minus at the evaluation nearest to
  WINDOW_START of its `max_steps` (the earlier one of two equally near, so the window is never shorter than asked), in
  points (×100, as every report table). Both scores come from one run, so the gain is paired within the seed: the
  seed's data order and initialisation cancel.
- Over the seeds of the cell: the mean gain and its one-sided upper 95 % Student-t bound, mean + t(0.95, n − 1)·s/√n
  (the upper end of the two-sided 90 % interval). One-sided because the rule is a test of "the gain is at least
  GAIN_LIMIT" against "it is below", at level 1 − CONFIDENCE: a cell passes only when that bound lies below
  GAIN_LIMIT, so a cell that passes has measurably stopped gaining half a point over its last fifth of training.
  Seeds with identical gains give a bound equal to their mean.
- A cell with one seed cannot be tested and neither passes nor fails ("one seed").

A cell that fails is not wrong, but its score is that of a run still improving: a longer run could change it, and a
comparison that uses it compares step counts as well as methods.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.report import stats
from bench.report.plots import REFERENCE, display_name
from bench.report.tables import CELL, Table, plain_table

WINDOW_START = 0.8  # the gain is measured over the last 20 % of the steps
GAIN_LIMIT = 0.5  # points: a cell passes when the upper bound of its mean gain lies below this
CONFIDENCE = 0.95  # one-sided
PASSES, FAILS, ONE_SEED = "passes", "fails", "one seed"
COLUMNS = [*CELL, "params", "seeds", "from_step", "to_step", "gain_mean", "gain_std", "upper", "verdict"]


def seed_gains(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run of `curves` (one row per run and evaluation: the cell, `params`, `seed`, `max_steps`, `step` and the
    validation `score` in points): the window's first and last step and the gain between them. Runs with a single
    evaluation have no window and are left out."""
    rows = []
    for (*cell, seed), run in curves.groupby([*CELL, "seed"], sort=True):
        run = run.sort_values("step")
        if len(run) < 2:
            continue
        final = run.iloc[-1]
        earlier = run.iloc[:-1]
        distance = (earlier["step"] - WINDOW_START * final["max_steps"]).abs()
        start = earlier.loc[distance.idxmin()]  # idxmin keeps the first, the earlier step, of equal distances
        rows.append(
            {
                **dict(zip(CELL, cell)),
                "seed": seed,
                "params": final["params"],
                "from_step": int(start["step"]),
                "to_step": int(final["step"]),
                "gain": float(final["score"] - start["score"]),
            }
        )
    return pd.DataFrame(rows, columns=[*CELL, "seed", "params", "from_step", "to_step", "gain"])


def upper_bound(gains: list[float]) -> float | None:
    """The one-sided upper CONFIDENCE bound of the mean gain (None for one seed)."""
    mean, std, n = stats.mean_std(gains)
    interval = stats.t_interval(mean, std, n, level=1 - 2 * (1 - CONFIDENCE))
    return None if interval is None else interval[1]


def verdict(upper: float | None) -> str:
    """The rule's answer for a cell whose mean gain has the upper bound `upper`."""
    if upper is None:
        return ONE_SEED
    return PASSES if upper < GAIN_LIMIT else FAILS


def convergence_frame(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of `curves` (see `seed_gains`): seeds, the window (steps of the first seed), the mean and std
    of the gain in points, its upper bound and the rule's verdict."""
    rows = []
    for cell, runs in seed_gains(curves).groupby(CELL, sort=True):
        gains = list(runs["gain"])
        mean, std, n = stats.mean_std(gains)
        upper = upper_bound(gains)
        rows.append(
            {
                **dict(zip(CELL, cell)),
                "params": runs["params"].mean(),
                "seeds": n,
                "from_step": int(runs["from_step"].iloc[0]),
                "to_step": int(runs["to_step"].iloc[0]),
                "gain_mean": mean,
                "gain_std": std,
                "upper": math.nan if upper is None else upper,
                "verdict": verdict(upper),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


CAPTION = (
    "Per cell, each seed's validation gain (primary metric, points) from the evaluation nearest to {start:.0%} of the "
    "steps to the final one, as mean ± std over seeds, and the one-sided upper {confidence:.0%} t-bound of the mean. "
    "A cell passes the rule when that bound lies below {limit:g} points (it has measurably stopped gaining), fails "
    "otherwise; one seed cannot be tested."
)
COUNT = "{model} · {task}: {fails} of {cells} cells fail the rule, {passes} pass{untested}."


def convergence_table(frame: pd.DataFrame) -> Table:
    """The convergence of every cell (`convergence_frame`), full fine-tuning first, then by method and trainable
    parameters, with a note per (model, task) counting the cells that fail the rule."""
    header = ["Model", "Task", "Method", "Budget", "Seeds", "Window (steps)", "Gain ± std", "Upper bound", "Rule"]
    ordered = frame.assign(first=frame["method"] != REFERENCE).sort_values(
        ["model", "task", "first", "method", "params"]
    )
    rows = [
        [
            row.model,
            row.task,
            display_name(row.method),
            row.budget,
            str(row.seeds),
            f"{row.from_step} → {row.to_step}",
            f"{row.gain_mean:+.2f} ± {row.gain_std:.2f}",
            "–" if math.isnan(row.upper) else f"{row.upper:+.2f}",
            row.verdict,
        ]
        for row in ordered.itertuples(index=False)
    ]
    caption = CAPTION.format(start=WINDOW_START, confidence=CONFIDENCE, limit=GAIN_LIMIT)
    table = plain_table("convergence", "Convergence by rule", caption, rows, header)
    for (model, task), cells in frame.groupby(["model", "task"], sort=True):
        counts = cells["verdict"].value_counts()
        untested = f", {counts[ONE_SEED]} untested (one seed)" if ONE_SEED in counts else ""
        table.notes.append(
            COUNT.format(
                model=model,
                task=task,
                fails=counts.get(FAILS, 0),
                cells=len(cells),
                passes=counts.get(PASSES, 0),
                untested=untested,
            )
        )
    return table
