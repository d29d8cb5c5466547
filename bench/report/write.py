"""`bench report DIR`: paper-style tables, plateau fits and figures from a results store, under DIR/report/.

What is reported (tables: bench.report.tables; statistics: bench.report.stats; figures: bench.report.plots): the sweep's final runs
(sweep.json roles "final" and "tuning+final"; every ok record if the store has no sweep.json), test split, every
metric a task records, in points (×100). A cell is (model, task, method, budget); its value is the mean ± sample
std over seeds with the 95 % t-interval over seeds. Best per metric column in bold (format-failure rates are not
ranked); † marks cells whose primary metric is not significantly different from the best (paired permutation
test). Trainable % is the achieved count over the base model (head excluded).

Failed cells: a metric that is not finite in some seed (a diverged regression head gives a nan correlation) is shown
as "failed"; a cell whose primary metric failed enters no ranking, tie test, plateau fit, figure or summary. Runs the
sweep names without an ok record are listed with their status ("failed", "missing") in their own section.

Collapsed predictions (bench.records.collapse): final cells and test sets on which a seed gave one answer to nearly every
test example, with the score that answer alone earns; per-set scores of such cells are marked ‡. Protocol agreement
(bench.report.agreement, decoder tasks): how alike generation and log-likelihood rank the cells, and how often they pick the
same answer.

Checks (bench.report.convergence, bench.report.tuning_picks): every cell with validation curves against the
convergence rule, and each tuning grid's validation pick against the rate that scores best on test. Models are titled
by their provenance and rows that cannot differ between seeds are shown once (bench.report.display).

Cost: median step time, adapter size, trainable %, and peak memory only where it was measured in isolation
(`cost.memory_isolated`: CUDA, or the first run of a fresh process); the Pareto plot uses only those cells.

Files: results.md (everything), tables.tex (table environments with caption and label), cells.csv (cell
aggregates of the primary metric and cost), metrics.csv (every metric per cell), runs.csv (one row per run), collapses.csv,
convergence.csv, summary.json (what `bench compare` reads), plateau.json, contrasts.csv (bench.report.contrasts),
figures/*.png|pdf.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench.records.collapse import COLLAPSE_SHARE, collapse_frame, majority_shares
from bench.records.environment import provenance
from bench.records.store import Store
from bench.report import contrasts, convergence, display, plateau, plots, stats, text, tuning_picks, wandb_logging
from bench.report.agreement import protocol_agreement
from bench.report.plots import display_name
from bench.report.tables import (
    CELL,
    GROUP_AVERAGES,
    Table,
    agreement_table,
    collapse_table,
    cost_table,
    paper_table,
    slug,
    test_set_tables,
    unfinished_table,
)
from bench.report.wandb_logging import DEFAULT_PROJECT
from bench.run.budget import FIXED_KNOBS
from bench.sweep.tuning import beyond_the_edge
from core.errors import BenchError
from core.files import write_json_atomic

REFERENCE = plots.REFERENCE
NOT_FINGERPRINTED = {"seed", "lr", "threads", "data_dir"}
# run settings added after stores existed, with the value that keeps the earlier behaviour: at that value they are left
# out of the fingerprint, so older records (which lack them) stay comparable with newer ones
LATER_SETTINGS = {"mask_prompt": True, "num_nodes": 1}
SUMMARY_SCHEMA = "peft-bench-summary/1"
FINAL_ROLES = ("final", "tuning+final")


def final_records(store: Store) -> list[dict[str, Any]]:
    """The ok records a report covers: the last sweep's final runs, or every ok record without a sweep.json."""
    records = store.records("ok")
    manifest = store.read_meta("sweep.json")
    if manifest is None:
        return records
    final = {cell["key"] for cell in manifest["cells"] if cell["role"] in FINAL_ROLES}
    return [record for record in records if record["run_key"] in final]


def unfinished_runs(store: Store) -> pd.DataFrame:
    """Runs without an ok record: the sweep's final runs that failed or are missing, or every failed record of a store
    without a sweep.json."""
    manifest = store.read_meta("sweep.json")
    if manifest is None:
        wanted = [{"key": r["run_key"], "config": r["config"]} for r in store.records(None) if r.get("status") != "ok"]
    else:
        wanted = [cell for cell in manifest["cells"] if cell["role"] in FINAL_ROLES]
    rows = []
    for cell in wanted:
        record = store.read(cell["key"])
        if record is not None and record.get("status") == "ok":
            continue
        config = cell["config"]
        rows.append(
            {
                "model": config["model"],
                "task": config["task"],
                "method": config["method"],
                "budget": config["budget"] or "all",
                "seed": config["seed"],
                "status": "missing" if record is None else record.get("status", "failed"),
                "detail": "no record in the store" if record is None else (record.get("error") or ""),
                "key": cell["key"],
            }
        )
    return pd.DataFrame(rows, columns=[*CELL, "seed", "status", "detail", "key"])


def config_fingerprint(config: dict[str, Any]) -> str:
    """A short hash of the settings that make a cell comparable (the config minus seed, lr and machine details)."""
    kept = {
        name: value
        for name, value in config.items()
        if name not in NOT_FINGERPRINTED and not (name in LATER_SETTINGS and value == LATER_SETTINGS[name])
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _budget(record: dict[str, Any]) -> str:
    knob = record["method"]["knob"]["name"]
    return record["params"]["budget"] or (knob if knob in FIXED_KNOBS else "native")


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: its primary metric (`score`, points) and cost. A record written before `memory_isolated`
    existed counts as not isolated: nothing says its process was fresh."""
    rows = []
    for record in records:
        metric = record["task"]["primary_metric"]
        config, cost = record["config"], record["cost"]
        rows.append(
            {
                "key": record["run_key"],
                "model": config["model"],
                "task": record["task"]["name"],
                "method": config["method"],
                "budget": _budget(record),
                "seed": config["seed"],
                "lr": config["lr"],
                "metric": metric,
                "score": 100 * record["metrics"]["test"][metric],
                "validation": 100 * record["metrics"]["validation"][metric],
                "params": record["params"]["achieved"],
                "trainable_pct": record["params"]["achieved_pct"],
                "memory_mb": cost["peak_memory_bytes"] / 2**20,
                "memory_kind": cost["memory_kind"],
                "memory_isolated": cost["memory_kind"].startswith("cuda") or bool(cost.get("memory_isolated", False)),
                "step_time_s": cost["step_time_median_s"],
                "adapter_mb": cost["adapter_bytes"] / 2**20,
                "config_fingerprint": config_fingerprint(config),
            }
        )
    columns = [
        *CELL,
        "seed",
        "lr",
        "metric",
        "score",
        "validation",
        "params",
        "trainable_pct",
        "memory_mb",
        "memory_kind",
        "memory_isolated",
    ]
    columns = ["key", *columns, "step_time_s", "adapter_mb", "config_fingerprint"]
    return pd.DataFrame(rows, columns=columns).sort_values([*CELL, "seed"]).reset_index(drop=True)


def _run_cell(record: dict[str, Any]) -> dict[str, Any]:
    """The cell (model, task, method, budget) and seed of a record."""
    return {
        "model": record["config"]["model"],
        "task": record["task"]["name"],
        "method": record["config"]["method"],
        "budget": _budget(record),
        "seed": record["config"]["seed"],
    }


def metrics_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, test metric), in points; `primary` marks the task's primary metric."""
    rows = [
        {
            **_run_cell(record),
            "metric": name,
            "order": order,
            "primary": name == record["task"]["primary_metric"],
            "decoder": "protocols" in record["task"],
            "value": 100 * value if value is not None else math.nan,
        }
        for record in records
        for order, (name, value) in enumerate(record["metrics"]["test"].items())
    ]
    return pd.DataFrame(rows, columns=[*CELL, "seed", "metric", "order", "primary", "decoder", "value"])


def metric_cells(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, metric): `aggregate` of its seeds."""
    rows = [
        {
            **dict(zip([*CELL, "metric"], key)),
            **stats.aggregate(group["value"], stats.metric_range(key[-1])),
            "order": group["order"].min(),
            "primary": group["primary"].any(),
            "decoder": group["decoder"].any(),
        }
        for key, group in metrics.groupby([*CELL, "metric"], sort=True)
    ]
    return pd.DataFrame(
        rows,
        columns=[*CELL, "metric", "mean", "std", "n", "ci_low", "ci_high", "failed", "order", "primary", "decoder"],
    )


def cells_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, method, budget): the primary score's aggregate (`score_failed` when a seed's score
    is not finite), all-run and isolated-only peak memory, step time and adapter size."""
    rows = []
    for cell, group in runs.groupby(CELL, sort=True):
        row = dict(zip(CELL, cell))
        row |= {
            f"score_{name}": value
            for name, value in stats.aggregate(group["score"], stats.metric_range(group["metric"].iloc[0])).items()
        }
        isolated = group[group["memory_isolated"]]
        for name, values in (
            ("memory_mb", group["memory_mb"]),
            ("memory_isolated_mb", isolated["memory_mb"]),
            ("step_time_s", group["step_time_s"].dropna()),
        ):
            if len(values):
                mean, std, n = stats.mean_std(list(values))
                row |= {f"{name}_mean": mean, f"{name}_std": std, f"{name}_n": n}
        row |= {
            "seeds": sorted(group["seed"].tolist()),
            "lr": sorted(set(group["lr"].tolist())),
            "metric": group["metric"].iloc[0],
            "params": group["params"].mean(),
            "trainable_pct": group["trainable_pct"].mean(),
            "adapter_mb": group["adapter_mb"].mean(),
            "memory_kind": ",".join(sorted(set(group["memory_kind"]))),
            "config_fingerprint": ",".join(sorted(set(group["config_fingerprint"]))),
            "keys": group["key"].tolist(),
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    for name in ("memory_mb", "memory_isolated_mb", "step_time_s"):
        for part in ("mean", "std", "n"):
            if f"{name}_{part}" not in frame:
                frame[f"{name}_{part}"] = math.nan
    return frame


def ranked(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells whose primary score did not fail: the only ones that are ranked, fitted or plotted."""
    return cells[~cells["score_failed"].astype(bool)]


def tie_marks(store: Store, cells: pd.DataFrame) -> pd.DataFrame:
    """Per cell: is_best (highest mean in its model/task), p_vs_best (paired permutation test) and tied (p >= ALPHA).
    Failed cells are neither best nor tied."""
    marks = cells[CELL].copy()
    marks["is_best"] = False
    marks["p_vs_best"] = math.nan
    marks["tied"] = False
    for _, group in ranked(cells).groupby(["model", "task"]):
        best = group[group["score_mean"] == group["score_mean"].max()]
        marks.loc[best.index, "is_best"] = True
        reference = _cell_example_scores(store, best.iloc[0]["keys"])
        for index, row in group.drop(best.index).iterrows():
            scores = _cell_example_scores(store, row["keys"])
            if reference and scores:
                p = stats.paired_permutation_p(reference, scores)
                marks.loc[index, "p_vs_best"] = p
                marks.loc[index, "tied"] = p >= stats.ALPHA
    return marks


def _cell_example_scores(store: Store, keys: list[str]) -> dict[Any, float]:
    files = [store.predictions_path(key) for key in keys]
    if not all(path.is_file() for path in files):
        return {}
    return stats.seed_averaged(stats.read_example_scores(path) for path in files)


def failed_metric_runs(metrics: pd.DataFrame) -> pd.DataFrame:
    """Runs with an ok record but a test metric that is not finite, in the `unfinished_runs` layout."""
    bad = metrics[~metrics["value"].map(math.isfinite)]
    rows = [
        {
            **dict(zip([*CELL, "seed"], key)),
            "status": "metric failed",
            "detail": ", ".join(f"{name} is {value}" for name, value in zip(group["metric"], group["value"])),
            "key": "",
        }
        for key, group in bad.groupby([*CELL, "seed"], sort=True)
    ]
    return pd.DataFrame(rows, columns=[*CELL, "seed", "status", "detail", "key"])


def plateau_fits(runs: pd.DataFrame) -> dict[tuple[str, str], dict[str, plateau.PlateauFit]]:
    """Per (model, task or "average") the plateau fit of every method with a budget grid."""
    fits: dict[tuple[str, str], dict[str, plateau.PlateauFit]] = {}
    for (model, task), group in plateau_views(runs):
        full = list(group.loc[group["method"] == REFERENCE, "score"])
        for method, method_runs in group[~group["budget"].isin(FIXED_KNOBS)].groupby("method"):
            points = {
                float(params): dict(zip(cell["seed"], cell["score"])) for params, cell in method_runs.groupby("params")
            }
            fits.setdefault((model, task), {})[method] = plateau.fit_plateau(points, full=full)
    return fits


def plateau_views(runs: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """(model, task) slices of the runs, plus (model, "average") over tasks when a model has several. Pass the runs
    of cells that did not fail (`usable_runs`)."""
    views = [((model, task), group) for (model, task), group in runs.groupby(["model", "task"])]
    for model, group in runs.groupby("model"):
        tasks = set(group["task"])
        if len(tasks) > 1:
            complete = group.groupby(["method", "budget", "seed"]).filter(
                lambda g, every=tasks: set(g["task"]) == every
            )
            average = complete.groupby(["method", "budget", "seed"], as_index=False).agg(
                score=("score", "mean"), params=("params", "mean")
            )
            views.append(((model, "average"), average))
    return views


def usable_runs(runs: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The runs of cells whose primary score did not fail."""
    keep = ranked(cells)[CELL]
    return runs.merge(keep, on=CELL)


@dataclass
class Report:
    """What `bench report` wrote."""

    folder: Path
    runs: pd.DataFrame
    cells: pd.DataFrame
    metrics: pd.DataFrame
    tables: list[Table]
    figures: list[Path]
    markdown_path: Path
    unfinished: pd.DataFrame
    wandb_mode: str | None = None

    def console_text(self) -> str:
        lines = [
            f"report: {self.markdown_path}  (LaTeX: {self.folder / 'tables.tex'}; figures: {self.folder / 'figures'})"
        ]
        for table in self.tables:
            lines += ["", f"{table.title}. {table.caption}", table.markdown()]
        if self.wandb_mode:
            lines.append(f"\nreport logged to W&B ({self.wandb_mode})")
        return "\n".join(lines)


def summary(
    cells: pd.DataFrame,
    source: str,
    manifest: dict[str, Any] | None,
    records: list[dict[str, Any]],
    predictions: dict[str, Path],
) -> dict[str, Any]:
    """The compact per-cell summary `bench compare` reads (and what a committed baseline holds), with the commits,
    machines and library versions of the `records` behind it and, per run, the sha256 of its `predictions` file; a
    cell whose score failed is left out, so compare reports it as missing."""
    seeds = {record["run_key"]: record["config"]["seed"] for record in records}

    def digest(key: str) -> str | None:
        return hashlib.sha256(predictions[key].read_bytes()).hexdigest() if key in predictions else None

    def stat(row: pd.Series, name: str) -> dict[str, Any] | None:
        if pd.isna(row.get(f"{name}_mean")):
            return None
        return {"mean": float(row[f"{name}_mean"]), "std": float(row[f"{name}_std"]), "n": int(row[f"{name}_n"])}

    return {
        "schema": SUMMARY_SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "sweep": {"name": manifest["name"], "digest": manifest["digest"]} if manifest else None,
        "provenance": provenance([record["env"] for record in records]),
        "cells": [
            {
                **{name: row[name] for name in CELL},
                "metric": row["metric"],
                "score": stat(row, "score"),
                "memory_mb": stat(row, "memory_mb"),
                "step_time_s": stat(row, "step_time_s"),
                "memory_kind": row["memory_kind"],
                "trainable_pct": float(row["trainable_pct"]),
                "seeds": row["seeds"],
                "lr": row["lr"],
                "config_fingerprint": row["config_fingerprint"],
                "runs": [{"seed": seeds[key], "key": key, "predictions_sha256": digest(key)} for key in row["keys"]],
            }
            for _, row in ranked(cells).iterrows()
        ],
    }


def _seeds_text(tuning: dict[str, Any]) -> str:
    """The tuning seeds as the report's tuning section names them; stores older than `tuning.seeds` hold one seed."""
    seeds = tuning.get("tuning_seeds", [tuning.get("tuning_seed")])
    if len(seeds) == 1:
        return text.ONE_TUNING_SEED.format(seed=seeds[0])
    return text.TUNING_SEEDS.format(seeds=", ".join(map(str, seeds)))


def _point_text(point: dict[str, Any]) -> str:
    """A grid point's validation score in points (the mean, then each seed's when several), or its status."""

    def score(item: dict[str, Any]) -> str:
        if item["validation"] is None:
            return item["status"]
        return f"{100 * item['validation']:.1f}" + (" collapsed" if item["status"] == "collapsed" else "")

    runs = point.get("runs", [])
    return score(point) + (f" ({', '.join(score(run) for run in runs)})" if len(runs) > 1 else "")


def _tuning_notes(tuning: dict[str, Any]) -> list[str]:
    """How the rates were tuned: the selection rule, seeds and grid size, and how tuning runs differ from final runs."""
    return [
        text.TUNING_SELECTION.format(
            selection=tuning["selection"], seeds=_seeds_text(tuning), grid_size=tuning["grid_size"]
        ),
        *([f"Interpolation: {tuning['interpolation']}."] if tuning.get("interpolation") else []),
        *([f"Extension: {tuning['extension']}."] if tuning.get("extension") else []),
        *(
            text.TUNING_SETTINGS.format(pair=pair, settings=json.dumps(settings))
            for pair, settings in tuning.get("tuning_settings", {}).items()
        ),
        *([text.TWO_RATE_GRID] if tuning["grid_size"] == 2 else []),
    ]


def _tuning_row(entry: dict[str, Any], edge: bool) -> list[str]:
    """A tuned cell's row: its grid with each rate's validation score (or its interpolation anchors) and the pick."""
    if "interpolated_from" in entry:
        grid = "interpolated from " + ", ".join(
            f"{anchor['budget']}: {anchor['lr']:g}" for anchor in entry["interpolated_from"]
        )
    else:
        grid = ", ".join(f"{point['lr']:g}: {_point_text(point)}" for point in entry["grid"])
    chosen = f"{entry['chosen_lr']:g}" if entry["chosen_lr"] is not None else "none (every lr failed or collapsed)"
    chosen += " (grid edge)" if edge else ""
    return [
        display_name(entry["method"]),
        entry["budget"] or "all",
        f"{entry['model']} · {entry['task']}",
        grid,
        chosen,
    ]


def _tuning_markdown(tuning: dict[str, Any]) -> str:
    """The learning-rate tuning section: how rates were tuned, each cell's grid and pick, and picks at a grid end."""
    cells = tuning["cells"]
    # an edge: the lowest or highest rate of a grid of at least three
    edges = [beyond_the_edge(entry) is not None for entry in cells]
    rows = [_tuning_row(entry, edge) for entry, edge in zip(cells, edges)]
    frame = pd.DataFrame(rows, columns=["Method", "Budget", "Model · task", "Grid (lr: validation score)", "Chosen lr"])
    tuned = sum("grid" in entry for entry in cells)
    note = ["", text.GRID_EDGES.format(edges=sum(edges), tuned=tuned)] if any(edges) else []
    return "\n".join(
        [
            "## Learning-rate tuning",
            "",
            *_tuning_notes(tuning),
            "",
            frame.to_markdown(index=False, disable_numparse=True),
            *note,
        ]
    )


def change_text(change: plateau.Change) -> str:
    """A change in points with its interval, when it has one: "+1.2 [-0.4, +2.8]"."""
    interval = "" if change.ci is None else f" [{change.ci[0]:+.1f}, {change.ci[1]:+.1f}]"
    return f"{change.delta:+.1f}{interval}"


def _interval_text(values: tuple[float, float | None] | None, fmt: str) -> str:
    """A bootstrap interval after its estimate: " [low, high]", "not reached" for a missing high end."""
    if not values:
        return ""
    return f" [{format(values[0], fmt)}, {'not reached' if values[1] is None else format(values[1], fmt)}]"


def _verdict_text(value: plateau.Change | None) -> str:
    """A change with its interval and verdict ("+1.2 [-0.4, +2.8] flat"), "–" without one."""
    return "–" if value is None else f"{change_text(value)} {value.verdict}"


def _plateau_row(model: str, task: str, method: str, fit: plateau.PlateauFit) -> list[str]:
    """A method's plateau fit as a row of the plateau section."""
    if fit.status != "ok":
        asymptote, onset = fit.status, fit.status
    elif fit.onset_params is None:
        asymptote, onset = "not reached", "not reached"
    else:
        asymptote = f"{fit.asymptote:.1f}{_interval_text(fit.asymptote_ci, '.1f')}"
        onset = f"{fit.onset_params:,.0f}{_interval_text(fit.onset_ci, ',.0f')}"
    peak = f"{fit.peak_params:,.0f}: {fit.peak_score:.1f}"
    decade = (
        "–" if fit.last_decade_from is None else f"from {fit.last_decade_from:,.0f}: {_verdict_text(fit.last_decade)}"
    )
    row = [model, task, display_name(method), str(fit.budgets), asymptote, onset, peak, decade]
    return [*row, _verdict_text(fit.versus_full), "; ".join(fit.reasons + fit.notes)]


def _plateau_markdown(fits: dict[tuple[str, str], dict[str, plateau.PlateauFit]]) -> str:
    """The plateau section: how the curves are fitted and compared, and every method's fit."""
    method = text.PLATEAU_FITS.format(
        tolerance=plateau.ONSET_TOLERANCE,
        bootstrap=plateau.BOOTSTRAP,
        min_budgets=plateau.MIN_BUDGETS,
        min_resamples=plateau.MIN_RESAMPLES,
    )
    rows = [
        _plateau_row(model, task, name, fit)
        for (model, task), by_method in sorted(fits.items())
        for name, fit in sorted(by_method.items())
    ]
    header = [
        "Model",
        "Task",
        "Method",
        "Budgets",
        "Asymptote [95% CI]",
        "Onset params [95% CI]",
        "Peak (params: score)",
        "Last decade Δ [95% CI]",
        "Largest − full FT [95% CI]",
        "Notes",
    ]
    table = pd.DataFrame(rows, columns=header).to_markdown(index=False, disable_numparse=True)
    return "\n".join(["## Plateau fits", "", method, "", table])


def learning_curves_markdown(curves: pd.DataFrame) -> str:
    """Per task: the seed-mean validation score at every evaluation of each method's largest budget, and the change
    over the last interval with its Student-t interval over seeds (the two scores of a seed come from one run)."""
    lines = ["## Validation during training", "", text.LEARNING_CURVES]
    for (model, task), group in curves.groupby(["model", "task"], sort=True):
        rows = []
        for (method, budget), runs in group.groupby(["method", "budget"], sort=True):
            scores = runs.pivot_table(index="seed", columns="step", values="score")
            steps = list(scores.columns)
            mean, std, n = stats.mean_std(list((scores[steps[-1]] - scores[steps[-2]]).dropna()))
            change = plateau.Change(mean, stats.t_interval(mean, std, n))
            means = {f"step {step}": f"{value:.1f}" for step, value in scores.mean().items()}
            rows.append(
                {"Method": display_name(method), "Budget": budget, "Seeds": str(len(scores)), **means}
                | {"Last Δ [95% CI]": f"{change_text(change)} {change.verdict}"}
            )
        table = pd.DataFrame(rows).fillna("–").to_markdown(index=False, disable_numparse=True)
        lines += ["", f"### {model} · {task}", "", table]
    return "\n".join(lines)


def validation_curves(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Validation learning curves (`--eval-every`) of every run with two evaluations or more, one row per (run, step),
    in points, with the run's `max_steps`."""
    rows = [
        {
            **_run_cell(record),
            "params": record["params"]["achieved"],
            "max_steps": record["config"]["max_steps"],
            "step": point["step"],
            "score": 100 * point[record["task"]["primary_metric"]],
        }
        for record in records
        if len(record.get("curves", {}).get("validation", [])) > 1
        for point in record["curves"]["validation"]
    ]
    columns = ["model", "task", "method", "budget", "params", "seed", "max_steps", "step", "score"]
    return pd.DataFrame(rows, columns=columns)


def curves_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Validation learning curves (`validation_curves`) of each method's largest budget."""
    frame = validation_curves(records)
    largest = frame.groupby(["model", "task", "method"])["params"].transform("max")
    return frame[frame["params"] == largest]


def variant_markdown(runs: pd.DataFrame, variant: pd.DataFrame, label: str) -> str:
    """Per cell of this store: its seed mean against the variant's (test, points), the difference with a Welch 95%
    interval when both sides have two seeds or more; the variant's other cells are counted, not listed."""
    keys = ["model", "task", "method", "budget"]
    theirs = {cell: list(group["score"]) for cell, group in variant.groupby(keys)}
    rows = []
    for cell, group in runs.groupby(keys, sort=True):
        ours, other = list(group["score"]), theirs.get(cell)
        if other is None:
            versus, difference = "missing", ""
        else:
            change = plateau.welch_change(ours, other)
            versus, difference = f"{statistics.mean(other):.1f} ({len(other)})", change_text(change)
        rows.append(
            [
                *cell[:2],
                display_name(cell[2]),
                cell[3],
                f"{statistics.mean(ours):.1f} ({len(ours)})",
                versus,
                difference,
            ]
        )
    unmatched = len(set(theirs) - {cell for cell, _ in runs.groupby(keys)})
    header = ["Model", "Task", "Method", "Budget", "This store (seeds)", f"{label} (seeds)", "Difference [95% CI]"]
    return "\n".join(
        [
            f"## Against {label}",
            "",
            text.VARIANT.format(unmatched=unmatched, label=label),
            "",
            pd.DataFrame(rows, columns=header).to_markdown(index=False, disable_numparse=True),
        ]
    )


def _majority_by_task(records: list[dict[str, Any]], predictions: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Per task, each test set's majority-answer share, from the first of its runs with a predictions file."""
    majority: dict[str, dict[str, float]] = {}
    for record in records:
        if record["task"]["name"] not in majority and record["run_key"] in predictions:
            majority[record["task"]["name"]] = majority_shares(predictions[record["run_key"]])
    return majority


def majority_floor(metric: str, shares: dict[str, float], sets: list[str]) -> float | None:
    """What the majority answer scores on a plateau figure's metric, in points: the share of a single-set task's
    accuracy, or the unweighted mean over `sets` (the group's test sets) for its generation-accuracy average. None
    for any other metric, or when one of the sets has no majority answer (real-valued or open numeric answers)."""
    if metric == "accuracy" and set(shares) == {""}:
        return 100 * shares[""]
    if metric == GROUP_AVERAGES["accuracy"] and sets and all(part in shares for part in sets):
        return 100 * sum(shares[part] for part in sets) / len(sets)
    return None


def _test_sets(records: list[dict[str, Any]], model: str, task: str) -> list[str]:
    """The test sets of a group task (`<set>/accuracy` test metrics of its first record); none for a single set."""
    for record in records:
        if record["config"]["model"] == model and record["task"]["name"] == task:
            return [name.split("/", 1)[0] for name in record["metrics"]["test"] if name.endswith("/accuracy")]
    return []


def _metric_of(runs: pd.DataFrame, model: str, task: str) -> str:
    return "average" if task == "average" else runs[(runs["model"] == model) & (runs["task"] == task)]["metric"].iloc[0]


def _nothing_to_report(store: Store, directory: Path) -> BenchError:
    """The error for a store without final runs; a sweep still tuning says how far its tuning has come."""
    manifest = store.read_meta("sweep.json")
    tuning = [cell["key"] for cell in (manifest or {}).get("cells", []) if cell["role"] == "tuning"]
    if tuning:
        done = sum((store.read(key) or {}).get("status") == "ok" for key in tuning)
        return BenchError(
            f"results store {directory} has no final run yet: the sweep is tuning learning rates "
            f"({done} of {len(tuning)} tuning runs done), and plans its final runs from the picks",
            f"run the same `bench sweep` again to continue it; `{directory}/events.jsonl` shows its progress",
        )
    return BenchError(
        f"results store {directory} has no finished run to report",
        f"run a sweep into it first: bench sweep profiles/default.yaml --out {directory}",
    )


@dataclass
class ReportData:
    """What a report is built from: a store's final records and the frames derived from them."""

    store: Store
    manifest: dict[str, Any] | None  # sweep.json
    tuning: dict[str, Any] | None  # tuning.json
    records: list[dict[str, Any]]
    runs: pd.DataFrame
    cells: pd.DataFrame
    metrics: pd.DataFrame  # `metric_cells`
    marks: pd.DataFrame
    unfinished: pd.DataFrame
    predictions: dict[str, Path]  # run key -> predictions file, for the runs that have one
    collapses: pd.DataFrame
    majority: dict[str, dict[str, dict[str, float]]]  # model -> `_majority_by_task`
    usable: pd.DataFrame
    fits: dict[tuple[str, str], dict[str, plateau.PlateauFit]]
    contrasts: pd.DataFrame  # contrasts.plateau_contrasts
    curves: pd.DataFrame
    convergence: pd.DataFrame  # `convergence.convergence_frame` of the usable runs
    picks: list[tuning_picks.PickCheck]  # the tuning grids' picks against their test-best rates

    @property
    def title(self) -> str:
        """The sweep's name, or the store folder's without a sweep.json."""
        return self.manifest["name"] if self.manifest else self.store.root.name


@dataclass
class Variant:
    """Another store's usable runs over the same grid (the papers' fixed recipes, another target arm), drawn in panels
    of its own and tabulated against the report's store."""

    runs: pd.DataFrame
    label: str
    views: dict[tuple[str, str], pd.DataFrame]


def load_data(directory: Path) -> ReportData:
    """Read the store's final records and derive every frame of the report; BenchError if it has no finished run."""
    store = Store(directory)
    if not store.root.is_dir():
        raise BenchError(
            f"results store {directory} does not exist", "pass the --out folder of a sweep, e.g. results/default"
        )
    records = final_records(store)
    if not records:
        raise _nothing_to_report(store, directory)
    runs = runs_frame(records)
    cells = cells_frame(runs)
    metrics = metrics_frame(records)
    predictions = {r["run_key"]: store.predictions_path(r["run_key"]) for r in records}
    predictions = {key: path for key, path in predictions.items() if path.is_file()}
    usable = usable_runs(runs, cells)
    kept = set(usable["key"])
    tuning = store.read_meta("tuning.json")
    return ReportData(
        store=store,
        manifest=store.read_meta("sweep.json"),
        tuning=tuning,
        records=records,
        runs=runs,
        cells=cells,
        metrics=metric_cells(metrics),
        marks=tie_marks(store, cells),
        unfinished=pd.concat([unfinished_runs(store), failed_metric_runs(metrics)], ignore_index=True),
        predictions=predictions,
        collapses=collapse_frame(
            [(_run_cell(r), predictions[r["run_key"]]) for r in records if r["run_key"] in predictions]
        ),
        majority={
            model: _majority_by_task([r for r in records if r["config"]["model"] == model], predictions)
            for model in set(cells["model"])
        },
        usable=usable,
        fits=plateau_fits(usable),
        contrasts=contrasts.plateau_contrasts(plateau_views(usable)),
        curves=curves_frame(records),
        convergence=convergence.convergence_frame(validation_curves([r for r in records if r["run_key"] in kept])),
        picks=tuning_picks.pick_checks(tuning, store.read) if tuning else [],
    )


def load_variant(directory: Path, label: str | None = None) -> Variant:
    """The usable runs of a variant store, named `label` or by its sweep; BenchError if it has no finished run."""
    store = Store(directory)
    records = final_records(store)
    if not records:
        raise BenchError(f"variant store {directory} has no finished run", "pass the --out folder of a finished sweep")
    runs = runs_frame(records)
    runs = usable_runs(runs, cells_frame(runs))
    manifest = store.read_meta("sweep.json")
    name = label or (manifest["name"] if manifest else store.root.name)
    return Variant(runs, name, dict(plateau_views(runs)))


def model_tables(data: ReportData) -> list[Table]:
    """Per model, titled by its provenance (bench.report.display): the paper table, the per-test-set tables and the
    cost table."""
    tables: list[Table] = []
    titles = display.model_titles(data.records)
    for model in sorted(set(data.cells["model"])):
        cells = data.cells[data.cells["model"] == model]
        metrics = data.metrics[data.metrics["model"] == model]
        runs = data.runs[data.runs["model"] == model]
        scores = [paper_table(model, runs, cells, data.marks, metrics, data.collapses, titles[model])]
        slices = {
            r["task"]["name"]: r["config"]["test_examples"] for r in data.records if r["config"]["model"] == model
        }
        scores += test_set_tables(model, cells, metrics, slices, data.collapses, data.majority[model], titles[model])
        once = display.shown_once_note(metrics)
        for table in scores if once else []:
            table.notes.append(once)
        tables += [*scores, cost_table(model, cells, titles[model])]
    return tables


def diagnostic_tables(data: ReportData) -> tuple[Table, Table, Table]:
    """The failed and missing runs, the collapsed predictions, and the decoder protocols' agreement."""
    agreements = [
        agreement
        for (model, task), group in data.runs.groupby(["model", "task"])
        if (
            agreement := protocol_agreement(
                model, task, data.metrics, [data.predictions[k] for k in group["key"] if k in data.predictions]
            )
        )
    ]
    return unfinished_table(data.unfinished), collapse_table(data.collapses), agreement_table(agreements)


def _plateau_figures(data: ReportData, variants: list[Variant], folder: Path) -> list[Path]:
    """A plateau figure per (model, task or "average"), with a panel per variant that has curves there (without fits:
    those belong to the variant's own report)."""
    figures: list[Path] = []
    titles = display.model_titles(data.records)
    for (model, task), view in plateau_views(data.usable):
        metric = _metric_of(data.runs, model, task)
        others = [
            plots.Panel(variant.views[(model, task)], title=variant.label)
            for variant in variants
            if (model, task) in variant.views
        ]
        figures += plots.plateau_figure(
            view,
            data.fits.get((model, task), {}),
            f"{titles[model]} · {task}",
            metric,
            folder / f"plateau_{slug(model)}_{slug(task)}",
            majority_floor(metric, data.majority[model].get(task, {}), _test_sets(data.records, model, task)),
            others,
            data.title,
        )
    return figures


def _pareto_figures(data: ReportData, folder: Path) -> tuple[list[Path], list[str]]:
    """A Pareto figure per (model, task), and a note for each one without a cell whose memory was isolated."""
    figures: list[Path] = []
    notes = []
    titles = display.model_titles(data.records)
    for (model, task), group in ranked(data.cells).groupby(["model", "task"]):
        drawn = plots.pareto_figure(
            group,
            f"{titles[model]} · {task}: score vs peak memory",
            group["metric"].iloc[0],
            folder / f"pareto_{slug(model)}_{slug(task)}",
        )
        figures += drawn
        if not drawn:
            notes.append(text.NO_PARETO.format(model=model, task=task))
    return figures, notes


def draw_figures(data: ReportData, variants: list[Variant], folder: Path) -> tuple[list[Path], list[str]]:
    """Plateau, learning-curve and Pareto figures under `folder`; also the notes on Pareto figures not drawn."""
    figures = _plateau_figures(data, variants, folder)
    titles = display.model_titles(data.records)
    for (model, task), group in data.curves.groupby(["model", "task"]):
        figures += plots.learning_curves_figure(
            group,
            f"{titles[model]} · {task}: validation during training, each method's largest budget",
            _metric_of(data.runs, model, task),
            folder / f"curves_{slug(model)}_{slug(task)}",
        )
    pareto, notes = _pareto_figures(data, folder)
    return figures + pareto, notes


@dataclass(frozen=True)
class Checks:
    """The checks of what the scores rest on: convergence by rule and the tuning picks against test (None: no curves,
    or no tuning grid with two scored rates)."""

    convergence: Table | None
    picks: Table | None

    @classmethod
    def of(cls, data: ReportData) -> Checks:
        return cls(
            convergence.convergence_table(data.convergence) if len(data.convergence) else None,
            tuning_picks.pick_table(data.picks) if data.picks else None,
        )

    @property
    def tables(self) -> list[Table]:
        return [table for table in (self.convergence, self.picks) if table is not None]


def _intro(data: ReportData) -> list[str]:
    """The opening paragraphs: what the store holds, how cells are scored and marked, the models' provenance where a
    title differs from the config name, and collapsed predictions."""
    lines = [
        text.RESULTS_INTRO.format(
            store=data.store.root, runs=len(data.runs), cells=len(data.cells), unfinished=len(data.unfinished)
        ),
        "",
        text.SCORE_MARKS,
    ]
    models = display.models_note(display.model_titles(data.records))
    if models:
        lines += ["", models]
    collapsed_pairs = len(data.collapses.drop_duplicates([*CELL, "test_set"]))
    if collapsed_pairs:
        lines += ["", text.COLLAPSED_NOTE.format(pairs=collapsed_pairs, share=COLLAPSE_SHARE)]
    return lines


def results_markdown(
    data: ReportData,
    tables: list[Table],
    diagnostics: tuple[Table, Table, Table],
    figures: list[Path],
    pareto_notes: list[str],
    variants: list[Variant],
    checks: Checks,
) -> str:
    """results.md: the tables, the diagnostics, the tuning (with its picks against test), plateau, learning-curve,
    convergence and variant sections, figures."""
    failed, collapsed, protocols = diagnostics
    sections = [f"# Results: {data.title}", "", *_intro(data)]
    for table in tables:
        sections += ["", *table.section("##" if table.name.startswith("results-") else "###")]
    sections += ["", *failed.section("##", empty=text.NO_UNFINISHED)]
    sections += ["", *collapsed.section("##", empty=text.NO_COLLAPSES.format(share=COLLAPSE_SHARE))]
    if not protocols.frame.empty:
        sections += ["", *protocols.section("##")]
    if data.tuning:
        sections += ["", _tuning_markdown(data.tuning)]
    if checks.picks:
        sections += ["", *checks.picks.section("###")]
    sections += ["", _plateau_markdown(data.fits)]
    if len(data.contrasts):
        sections += ["", contrasts.contrasts_markdown(data.contrasts)]
    if len(data.curves):
        sections += ["", learning_curves_markdown(data.curves)]
    if checks.convergence:
        sections += ["", *checks.convergence.section("##")]
    for variant in variants:
        sections += ["", variant_markdown(data.usable, variant.runs, variant.label)]
    sections += ["", "## Figures", "", text.FIGURES, "", *(f"{note}\n" for note in pareto_notes)]
    sections += [f"![{path.stem}](figures/{path.name})" for path in figures if path.suffix == ".png"]
    return "\n".join(sections) + "\n"


def write_files(folder: Path, data: ReportData, markdown: str, latex_tables: list[Table]) -> Path:
    """results.md, tables.tex, the CSV files, summary.json and plateau.json under `folder`; the Markdown's path."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown_path = folder / "results.md"
    markdown_path.write_text(markdown, encoding="utf-8")
    (folder / "tables.tex").write_text("\n".join(table.latex() for table in latex_tables), encoding="utf-8")
    data.runs.to_csv(folder / "runs.csv", index=False)
    data.cells.merge(data.marks, on=CELL).drop(columns=["keys"]).to_csv(folder / "cells.csv", index=False)
    data.metrics.drop(columns=["order"]).to_csv(folder / "metrics.csv", index=False)
    data.collapses.to_csv(folder / "collapses.csv", index=False)
    data.contrasts.to_csv(folder / "contrasts.csv", index=False)
    if len(data.convergence):
        data.convergence.to_csv(folder / "convergence.csv", index=False)
    write_json_atomic(
        folder / "summary.json",
        summary(data.cells, str(data.store.root), data.manifest, data.records, data.predictions),
    )
    write_json_atomic(
        folder / "plateau.json",
        [
            {"model": m, "task": t, "method": method, **fit.as_dict()}
            for (m, t), by in data.fits.items()
            for method, fit in by.items()
        ],
    )
    return markdown_path


def log_report_to_wandb(data: ReportData, latex_tables: list[Table], figures: list[Path]) -> str | None:
    """Log the tables, cells and PNG figures as the store's W&B report run (settings from the sweep); the W&B mode."""
    settings = data.manifest["spec"].get("wandb", {}) if data.manifest else {}
    settings = {"project": DEFAULT_PROJECT, "enabled": True} | settings
    frames = {f"table/{t.name}": t.frame for t in latex_tables} | {
        "cells": data.cells.drop(columns=["keys", "seeds", "lr"])
    }
    images = {f"figure/{p.stem}": p for p in figures if p.suffix == ".png"}
    return wandb_logging.log_report(data.store.root, settings, data.title, data.records, frames, images)


def write_report(
    directory: Path, log_to_wandb: bool = True, variants: Sequence[tuple[Path, str | None]] = ()
) -> Report:
    """Write DIR/report/ (see the module docstring); BenchError if the store has no finished run. `variants`: other
    stores over the same grid (the papers' fixed recipes, another target arm), each with its label (None: its sweep's
    name), each drawn in a panel of its own in the plateau figures and tabulated against this one."""
    data = load_data(directory)
    tables = model_tables(data)
    others = [load_variant(path, label) for path, label in variants]
    folder = data.store.root / "report"
    figures, pareto_notes = draw_figures(data, others, folder / "figures")
    diagnostics = diagnostic_tables(data)
    checks = Checks.of(data)
    latex_tables = [*tables, *(table for table in diagnostics if not table.frame.empty), *checks.tables]
    markdown = results_markdown(data, tables, diagnostics, figures, pareto_notes, others, checks)
    report = Report(
        folder=folder,
        runs=data.runs,
        cells=data.cells,
        metrics=data.metrics,
        tables=tables,
        figures=figures,
        markdown_path=write_files(folder, data, markdown, latex_tables),
        unfinished=data.unfinished,
    )
    if log_to_wandb:
        report.wandb_mode = log_report_to_wandb(data, latex_tables, figures)
    return report
