"""`bench report DIR`: paper-style tables, plateau fits and figures from a results store, under DIR/report/.

What is reported: the sweep's final runs (sweep.json roles "final" and "tuning+final"; every ok record if the store
has no sweep.json), test split, every metric a task records, in points (×100). A cell is (model, task, method,
budget); its value is the mean ± sample std over seeds with the 95 % t-interval over seeds (bench.stats). Best per
metric column in bold (format-failure rates are not ranked); † marks cells whose primary metric is not significantly
different from the best (bench.stats). Trainable % is the achieved count over the base model (head excluded).

Failed cells: a metric that is not finite in some seed (a diverged regression head gives a nan correlation) is shown
as "failed"; a cell whose primary metric failed enters no ranking, tie test, plateau fit, figure or summary. Runs the
sweep names without an ok record are listed with their status ("failed", "missing") in their own section.

Cost: median step time, adapter size, trainable %, and peak memory only where it was measured in isolation
(`cost.memory_isolated`: CUDA, or the first run of a fresh process); the Pareto plot uses only those cells.

Files: results.md (everything), tables.tex (table environments with caption and label), cells.csv (cell
aggregates of the primary metric and cost), metrics.csv (every metric per cell), runs.csv (one row per run),
summary.json (what `bench compare` reads), plateau.json, figures/*.png|pdf.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from bench import anchors, plateau, plots, stats, wandb_logging
from bench.errors import BenchError
from bench.plots import display_name
from bench.record import write_json_atomic
from bench.spec import DEFAULT_PROJECT
from bench.store import Store

CELL = ["model", "task", "method", "budget"]
REFERENCE = plots.REFERENCE
NOT_FINGERPRINTED = {"seed", "lr", "threads", "data_dir"}
SUMMARY_SCHEMA = "peft-bench-summary/1"
FINAL_ROLES = ("final", "tuning+final")
METRIC_LABELS = {
    "accuracy": "Acc",
    "f1": "F1",
    "mcc": "MCC",
    "pearson": "Pearson",
    "spearman": "Spearman",
    "loglik_accuracy": "LL acc",
    "loglik_accuracy_norm": "LL acc norm",
    "format_failure_rate": "Format fail %",
    "accuracy_first_capital": "Acc (first capital)",
    "average": "Gen acc avg",
    "average_loglik": "LL acc avg",
    "average_format_failure_rate": "Format fail % avg",
}


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
    kept = {name: value for name, value in config.items() if name not in NOT_FINGERPRINTED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _budget(record: dict[str, Any]) -> str:
    return record["params"]["budget"] or ("all" if record["method"]["knob"]["name"] == "all" else "native")


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
    columns = [*CELL, "seed", "lr", "metric", "score", "validation", "params", "trainable_pct", "memory_mb", "memory_kind", "memory_isolated"]
    columns = ["key", *columns, "step_time_s", "adapter_mb", "config_fingerprint"]
    return pd.DataFrame(rows, columns=columns).sort_values([*CELL, "seed"]).reset_index(drop=True)


def metrics_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, test metric), in points; `primary` marks the task's primary metric."""
    rows = [
        {
            "model": record["config"]["model"],
            "task": record["task"]["name"],
            "method": record["config"]["method"],
            "budget": _budget(record),
            "seed": record["config"]["seed"],
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


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take, in points: correlations and MCC span [-100, 100], the rest [0, 100]."""
    signed = any(name in metric for name in ("mcc", "pearson", "spearman"))
    return (-100.0, 100.0) if signed else (0.0, 100.0)


def aggregate(values: pd.Series, bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, Any]:
    """Mean, std, n and 95 % t-interval over seeds, clipped to `bounds` (the metric's range: with two seeds the
    interval easily spills past it); `failed` (and no numbers) when a seed's value is not finite."""
    values = values.astype(float)
    if not values.map(math.isfinite).all():
        return {"mean": math.nan, "std": math.nan, "n": len(values), "ci_low": math.nan, "ci_high": math.nan, "failed": True}
    mean, std, n = stats.mean_std(list(values))
    low, high = stats.t_interval(mean, std, n) or (math.nan, math.nan)
    return {"mean": mean, "std": std, "n": n, "ci_low": max(low, bounds[0]), "ci_high": min(high, bounds[1]), "failed": False}


def metric_cells(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, metric): `aggregate` of its seeds."""
    rows = [
        {**dict(zip([*CELL, "metric"], key)), **aggregate(group["value"], metric_range(key[-1])), "order": group["order"].min(), "primary": group["primary"].any(), "decoder": group["decoder"].any()}
        for key, group in metrics.groupby([*CELL, "metric"], sort=True)
    ]
    return pd.DataFrame(rows, columns=[*CELL, "metric", "mean", "std", "n", "ci_low", "ci_high", "failed", "order", "primary", "decoder"])


def cells_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, method, budget): the primary score's aggregate (`score_failed` when a seed's score
    is not finite), all-run and isolated-only peak memory, step time and adapter size."""
    rows = []
    for cell, group in runs.groupby(CELL, sort=True):
        row = dict(zip(CELL, cell))
        row |= {f"score_{name}": value for name, value in aggregate(group["score"], metric_range(group["metric"].iloc[0])).items()}
        isolated = group[group["memory_isolated"]]
        for name, values in (("memory_mb", group["memory_mb"]), ("memory_isolated_mb", isolated["memory_mb"]), ("step_time_s", group["step_time_s"].dropna())):
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


def _row_order(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Full fine-tuning first, then methods by name, budgets by trainable parameters."""
    order = frame.groupby(["method", "budget"])["params"].mean().reset_index()
    order["first"] = order["method"] != REFERENCE
    return [tuple(row) for row in order.sort_values(["first", "method", "params"])[["method", "budget"]].itertuples(index=False)]


def _average_column(runs: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Per (method, budget): `aggregate` over seeds of the unweighted primary-metric average over tasks (seeds present
    on every task)."""
    rows = []
    for (method, budget), group in runs.groupby(["method", "budget"]):
        per_seed = group.pivot_table(index="seed", columns="task", values="score", dropna=False)
        if set(per_seed.columns) != set(tasks):
            continue
        averages = per_seed.dropna(how="all").mean(axis=1, skipna=False)
        if len(averages):
            bounds = (min(metric_range(metric)[0] for metric in group["metric"]), 100.0)
            rows.append({"method": method, "budget": budget, **aggregate(averages, bounds)})
    return pd.DataFrame(rows, columns=["method", "budget", "mean", "std", "n", "ci_low", "ci_high", "failed"])


def format_score(entry: pd.Series | dict[str, Any]) -> str:
    """"mean ± std [95 % CI]" over seeds, the mean alone for one seed, "failed" for a failed metric."""
    if entry["failed"]:
        return "failed"
    if entry["n"] < 2:
        return f"{entry['mean']:.1f}"
    return f"{entry['mean']:.1f} ± {entry['std']:.1f} [{entry['ci_low']:.1f}, {entry['ci_high']:.1f}]"


def metric_label(metric: str, decoder: bool) -> str:
    """Column label of a metric: `accuracy_matched` -> "Acc matched"; a decoder's accuracy is its generation accuracy."""
    if decoder and metric == "accuracy":
        return "Gen acc"
    base = next((name for name in sorted(METRIC_LABELS, key=len, reverse=True) if metric == name or metric.startswith(f"{name}_")), None)
    return metric if base is None else f"{METRIC_LABELS[base]}{metric[len(base) :].replace('_', ' ')}"


@dataclass
class Table:
    """One table: text cells, a style per cell ("", "bold" or "italic"), a title and caption, a LaTeX label, notes."""

    name: str
    title: str
    caption: str
    label: str
    frame: pd.DataFrame
    style: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    model: str = ""

    def markdown(self) -> str:
        marked = self.frame.copy()
        for column in marked.columns:
            marked[column] = [_markdown_cell(text, style) for text, style in zip(self.frame[column], self.style[column])]
        return marked.to_markdown(index=False, disable_numparse=True)

    def latex(self) -> str:
        css = {"bold": "font-weight: bold;", "italic": "font-style: italic;", "": ""}
        styler = self.frame.style.hide(axis="index").apply(lambda _: self.style.replace(css), axis=None)
        styler = styler.format(escape="latex").format_index(escape="latex", axis=1)
        columns = "".join("l" if column in ("Method", "Budget", "Task", "Seed", "Status", "Detail") else "r" for column in self.frame.columns)
        caption = _latex_text(f"{self.title}: {self.caption}")
        return styler.to_latex(environment="table", caption=caption, label=self.label, hrules=True, convert_css=True, column_format=columns)

    def section(self, level: str = "###") -> list[str]:
        """The table as a Markdown section: title, caption, table, notes."""
        return [f"{level} {self.title}", "", self.caption, "", self.markdown(), *(["", *self.notes] if self.notes else [])]


def _markdown_cell(text: str, style: str) -> str:
    if not text or style == "":
        return text
    marker = "**" if style == "bold" else "*"
    core, tie = (text[:-1], "†") if text.endswith("†") else (text, "")
    return f"{marker}{core}{marker}{tie}"


def _latex_text(text: str) -> str:
    """`text` escaped for LaTeX by pandas, as the table cells are (a one-cell table's only row)."""
    one_cell = pd.DataFrame([[text]]).style.format(escape="latex").hide(axis="index").hide(axis="columns")
    return one_cell.to_latex().splitlines()[1].removesuffix(r" \\")


def _ranked_metric(metric: str) -> bool:
    """Format-failure rates are diagnostics (lower is better), not scores: never bold."""
    return "format_failure" not in metric


def _table(name: str, title: str, caption: str, rows: list[list[str]], styles: list[list[str]], header: list[str], model: str = "") -> Table:
    return Table(
        name=name,
        title=title,
        caption=caption,
        label=f"tab:{_slug(name)}",
        frame=pd.DataFrame(rows, columns=header),
        style=pd.DataFrame(styles, columns=header) if rows else pd.DataFrame(columns=header),
        model=model,
    )


def _short(task: str) -> str:
    return task.split("/", 1)[-1]


def paper_table(model: str, runs: pd.DataFrame, cells: pd.DataFrame, marks: pd.DataFrame, metric_rows: pd.DataFrame) -> Table:
    """Rows (method, budget); columns: trainable %, every top-level test metric of every task, and the average of the
    primary metrics when there are several tasks."""
    tasks = sorted(set(cells["task"]))
    top = metric_rows[~metric_rows["metric"].str.contains("/")]
    columns = top.groupby(["task", "metric"], as_index=False).agg(order=("order", "min"), primary=("primary", "any"), decoder=("decoder", "any"))
    columns = columns.sort_values(["task", "primary", "order"], ascending=[True, False, True])
    average = _average_column(runs, tasks) if len(tasks) > 1 else None
    header = ["Method", "Budget", "Trainable %", *(f"{_short(t)} {metric_label(m, d)}" for t, m, d in columns[["task", "metric", "decoder"]].itertuples(index=False))]
    header += ["Avg"] if average is not None else []
    best = {
        (task, metric): group.loc[~group["failed"].astype(bool), "mean"].max()
        for (task, metric), group in top.groupby(["task", "metric"])
        if _ranked_metric(metric)
    }
    ties = cells.merge(marks, on=CELL).set_index(["task", "method", "budget"])["tied"]
    rows, styles = [], []
    for method, budget in _row_order(cells):
        in_row = cells[(cells["method"] == method) & (cells["budget"] == budget)]
        texts = [display_name(method), budget if method != REFERENCE else "100%", f"{in_row['trainable_pct'].mean():.3f}"]
        style = ["", "", ""]
        for task, metric, primary in columns[["task", "metric", "primary"]].itertuples(index=False):
            match = top[(top["method"] == method) & (top["budget"] == budget) & (top["task"] == task) & (top["metric"] == metric)]
            if match.empty:
                texts.append("–")
                style.append("")
                continue
            entry = match.iloc[0]
            tied = primary and not entry["failed"] and bool(ties.get((task, method, budget), False))
            texts.append(format_score(entry) + ("†" if tied else ""))
            style.append("bold" if not entry["failed"] and entry["mean"] == best.get((task, metric)) else "")
        if average is not None:
            match = average[(average["method"] == method) & (average["budget"] == budget)]
            texts.append("–" if match.empty else format_score(match.iloc[0]))
            usable = average[~average["failed"].astype(bool)]
            style.append("bold" if not match.empty and not match.iloc[0]["failed"] and match.iloc[0]["mean"] == usable["mean"].max() else "")
        rows.append(texts)
        styles.append(style)
    task_set, matched = anchors.matching(model, set(tasks))
    for anchor in matched:
        scores = [""] * (len(header) - 3)
        scores[-1] = f"{anchor.score:.1f}"  # the task-set average: the Avg column, or the single (group) task's column
        rows.append([f"{anchor.method} (paper)", "", anchor.trainable, *scores])
        styles.append(["italic"] * len(header))
    table = _table(
        f"results-{model}",
        model,
        "test metrics in points, mean ± std [95 % t-interval] over seeds; bold: best per column; †: tied with the best on the primary metric.",
        rows,
        styles,
        header,
        model,
    )
    if matched:
        table.notes.append(
            f"Italic rows: published numbers for {model} on {task_set} ({'; '.join(sorted({a.source for a in matched}))}); other protocols and hyperparameters, shown for orientation."
        )
    else:
        table.notes.append(
            f"No published anchor matches {model} on {', '.join(tasks)} (anchors exist for LLaMA/RoBERTa/DeBERTa on the full commonsense, arithmetic and GLUE sets), so no reference rows are shown."
        )
    return table


def test_set_tables(model: str, cells: pd.DataFrame, metric_rows: pd.DataFrame) -> list[Table]:
    """Per task with several test sets (`<set>/<metric>` metrics): rows (method, budget), a column per test set and
    metric, so both decoder protocols and the format-failure rate show per test set next to the averages."""
    tables = []
    for task, per_task in metric_rows[metric_rows["metric"].str.contains("/")].groupby("task"):
        columns = per_task.groupby("metric", as_index=False)["order"].min().sort_values("order")["metric"].tolist()
        header = ["Method", "Budget", *(f"{part} {metric_label(name, True)}" for part, name in (column.split("/", 1) for column in columns))]
        best = {
            metric: group.loc[~group["failed"].astype(bool), "mean"].max() for metric, group in per_task.groupby("metric") if _ranked_metric(metric)
        }
        rows, styles = [], []
        for method, budget in _row_order(cells[cells["task"] == task]):
            texts, style = [display_name(method), budget if method != REFERENCE else "100%"], ["", ""]
            for metric in columns:
                match = per_task[(per_task["method"] == method) & (per_task["budget"] == budget) & (per_task["metric"] == metric)]
                texts.append("–" if match.empty else format_score(match.iloc[0]))
                style.append("bold" if not match.empty and not match.iloc[0]["failed"] and match.iloc[0]["mean"] == best.get(metric) else "")
            rows.append(texts)
            styles.append(style)
        caption = "every test set, both protocols (Gen: generation with answer extraction; LL: lm-eval log-likelihood), points, mean ± std [95 % t-interval] over seeds."
        tables.append(_table(f"test-sets-{model}-{task}", f"{model} · {task} per test set", caption, rows, styles, header, model))
    return tables


def cost_table(model: str, cells: pd.DataFrame) -> Table:
    """Rows (task, method, budget): trainable %, adapter size, median step time and peak memory measured in isolation."""
    header = ["Task", "Method", "Budget", "Trainable %", "Adapter MB", "Step time ms", "Peak memory MB (isolated)"]
    rows = []
    for task in sorted(set(cells["task"])):
        in_task = cells[cells["task"] == task]
        for method, budget in _row_order(in_task):
            cell = in_task[(in_task["method"] == method) & (in_task["budget"] == budget)].iloc[0]
            step = f"{1000 * cell['step_time_s_mean']:.0f} ± {1000 * cell['step_time_s_std']:.0f}" if pd.notna(cell["step_time_s_mean"]) else "–"
            if pd.isna(cell["memory_isolated_mb_mean"]):
                memory = "not isolated"
            else:
                memory = f"{cell['memory_isolated_mb_mean']:,.0f}" + (f" ± {cell['memory_isolated_mb_std']:,.0f}" if cell["memory_isolated_mb_n"] > 1 else "")
                memory += f" ({int(cell['memory_isolated_mb_n'])}/{len(cell['seeds'])} seeds)" if cell["memory_isolated_mb_n"] < len(cell["seeds"]) else ""
            rows.append([_short(task), display_name(method), budget if method != REFERENCE else "100%", f"{cell['trainable_pct']:.3f}", f"{cell['adapter_mb']:.3f}", step, memory])
    kinds = ", ".join(sorted(set(",".join(cells["memory_kind"]).split(","))))
    caption = (
        f"cost per cell, mean ± std over seeds. Step time: each run's median training step. Peak memory ({kinds}) only from runs measured in isolation "
        "(CUDA, or the first run of a fresh process); a long-lived worker's peak also holds earlier runs' memory, so those cells read not isolated."
    )
    return _table(f"cost-{model}", f"{model} cost", caption, rows, [[""] * len(header) for _ in rows], header, model)


def unfinished_table(unfinished: pd.DataFrame) -> Table:
    header = ["Model", "Task", "Method", "Budget", "Seed", "Status", "Detail"]
    rows = [
        [row["model"], row["task"], display_name(row["method"]), row["budget"], str(row["seed"]), row["status"], row["detail"]]
        for _, row in unfinished.sort_values([*CELL, "seed"]).iterrows()
    ]
    caption = "runs the sweep names without an ok record, and runs with a failed metric; none of them is ranked, fitted or plotted."
    return _table("failed-and-missing", "Failed and missing runs", caption, rows, [[""] * len(header) for _ in rows], header)


def failed_metric_runs(metrics: pd.DataFrame) -> pd.DataFrame:
    """Runs with an ok record but a test metric that is not finite, in the `unfinished_runs` layout."""
    bad = metrics[~metrics["value"].map(math.isfinite)]
    rows = [
        {**dict(zip([*CELL, "seed"], key)), "status": "metric failed", "detail": ", ".join(f"{name} is {value}" for name, value in zip(group["metric"], group["value"])), "key": ""}
        for key, group in bad.groupby([*CELL, "seed"], sort=True)
    ]
    return pd.DataFrame(rows, columns=[*CELL, "seed", "status", "detail", "key"])


def plateau_fits(runs: pd.DataFrame) -> dict[tuple[str, str], dict[str, plateau.PlateauFit]]:
    """Per (model, task or "average") the plateau fit of every method with a budget grid."""
    fits: dict[tuple[str, str], dict[str, plateau.PlateauFit]] = {}
    for (model, task), group in plateau_views(runs):
        for method, method_runs in group[group["method"] != REFERENCE].groupby("method"):
            points = {float(params): list(scores) for params, scores in method_runs.groupby("params")["score"]}
            fits.setdefault((model, task), {})[method] = plateau.fit_plateau(points)
    return fits


def plateau_views(runs: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """(model, task) slices of the runs, plus (model, "average") over tasks when a model has several. Pass the runs
    of cells that did not fail (`usable_runs`)."""
    views = [((model, task), group) for (model, task), group in runs.groupby(["model", "task"])]
    for model, group in runs.groupby("model"):
        tasks = set(group["task"])
        if len(tasks) > 1:
            complete = group.groupby(["method", "budget", "seed"]).filter(lambda g, every=tasks: set(g["task"]) == every)
            average = complete.groupby(["method", "budget", "seed"], as_index=False).agg(score=("score", "mean"), params=("params", "mean"))
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
        lines = [f"report: {self.markdown_path}  (LaTeX: {self.folder / 'tables.tex'}; figures: {self.folder / 'figures'})"]
        for table in self.tables:
            lines += ["", f"{table.title}: {table.caption}", table.markdown()]
        if self.wandb_mode:
            lines.append(f"\nreport logged to W&B ({self.wandb_mode})")
        return "\n".join(lines)


def summary(cells: pd.DataFrame, source: str, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The compact per-cell summary `bench compare` reads (and what a committed baseline holds); a cell whose score
    failed is left out, so compare reports it as missing."""

    def stat(row: pd.Series, name: str) -> dict[str, Any] | None:
        if pd.isna(row.get(f"{name}_mean")):
            return None
        return {"mean": float(row[f"{name}_mean"]), "std": float(row[f"{name}_std"]), "n": int(row[f"{name}_n"])}

    return {
        "schema": SUMMARY_SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "sweep": {"name": manifest["name"], "digest": manifest["digest"]} if manifest else None,
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
            }
            for _, row in ranked(cells).iterrows()
        ],
    }


def _tuning_markdown(tuning: dict[str, Any]) -> str:
    lines = [
        "## Learning-rate tuning",
        "",
        f"Selection: {tuning['selection']}. Tuning seed {tuning['tuning_seed']}, {tuning['grid_size']} learning rates per method (the same tuning budget for every method).",
        "",
    ]
    rows = []
    for entry in tuning["cells"]:
        grid = ", ".join(
            f"{point['lr']:g}: " + (f"{100 * point['validation']:.1f}" if point["validation"] is not None else point["status"]) for point in entry["grid"]
        )
        chosen = f"{entry['chosen_lr']:g}" if entry["chosen_lr"] is not None else "none (every lr failed)"
        rows.append([display_name(entry["method"]), entry["budget"] or "all", f"{entry['model']} · {entry['task']}", grid, chosen])
    frame = pd.DataFrame(rows, columns=["Method", "Budget", "Model · task", "Grid (lr: validation score)", "Chosen lr"])
    return "\n".join([*lines, frame.to_markdown(index=False, disable_numparse=True)])


def _plateau_markdown(fits: dict[tuple[str, str], dict[str, plateau.PlateauFit]]) -> str:
    def ci(values: tuple[float, float | None] | None, fmt: str) -> str:
        if not values:
            return ""
        return f" [{format(values[0], fmt)}, {'not reached' if values[1] is None else format(values[1], fmt)}]"

    lines = [
        "## Plateau fits",
        "",
        f"Fit y = a − b·exp(−c·(log10 p − log10 p_min)) to the seed means; asymptote a; onset = fewest trainable parameters p where the curve is within "
        f"{plateau.ONSET_TOLERANCE:g} point of a, within the measured budgets (\"not reached\" when the curve gets there only past the largest budget); "
        f"95% percentile CIs from {plateau.BOOTSTRAP} bootstrap refits over seeds (scipy.stats.bootstrap). At least {plateau.MIN_BUDGETS} budgets are needed.",
        "",
    ]
    rows = []
    for (model, task), by_method in sorted(fits.items()):
        for method, fit in sorted(by_method.items()):
            asymptote = f"{fit.asymptote:.1f}{ci(fit.asymptote_ci, '.1f')}" if fit.asymptote is not None else fit.status
            onset = "not reached" if fit.onset_params is None else f"{fit.onset_params:,.0f}{ci(fit.onset_ci, ',.0f')}"
            onset = onset if fit.status == "ok" else "–"
            peak = f"{fit.peak_params:,.0f}: {fit.peak_score:.1f}"
            rows.append([model, task, display_name(method), str(fit.budgets), asymptote, onset, peak, "; ".join(fit.notes)])
    header = ["Model", "Task", "Method", "Budgets", "Asymptote [95% CI]", "Onset params [95% CI]", "Peak (params: score)", "Notes"]
    return "\n".join([*lines, pd.DataFrame(rows, columns=header).to_markdown(index=False, disable_numparse=True)])


def _metric_of(runs: pd.DataFrame, model: str, task: str) -> str:
    return "average" if task == "average" else runs[(runs["model"] == model) & (runs["task"] == task)]["metric"].iloc[0]


def write_report(directory: Path, log_to_wandb: bool = True) -> Report:
    """Write DIR/report/ (see the module docstring); BenchError if the store has no finished run."""
    store = Store(directory)
    if not store.root.is_dir():
        raise BenchError(f"results store {directory} does not exist", "pass the --out folder of a sweep, e.g. results/default")
    records = final_records(store)
    if not records:
        raise BenchError(
            f"results store {directory} has no finished run to report", f"run a sweep into it first: bench sweep profiles/default.yaml --out {directory}"
        )
    folder = store.root / "report"
    figures_dir = folder / "figures"
    runs = runs_frame(records)
    cells = cells_frame(runs)
    metrics = metrics_frame(records)
    metric_rows = metric_cells(metrics)
    marks = tie_marks(store, cells)
    unfinished = pd.concat([unfinished_runs(store), failed_metric_runs(metrics)], ignore_index=True)
    tables: list[Table] = []
    for model in sorted(set(cells["model"])):
        in_model = cells["model"] == model
        tables.append(paper_table(model, runs[runs["model"] == model], cells[in_model], marks, metric_rows[metric_rows["model"] == model]))
        tables += test_set_tables(model, cells[in_model], metric_rows[metric_rows["model"] == model])
        tables.append(cost_table(model, cells[in_model]))
    usable = usable_runs(runs, cells)
    fits = plateau_fits(usable)

    figures: list[Path] = []
    for (model, task), view in plateau_views(usable):
        figures += plots.plateau_figure(view, fits.get((model, task), {}), f"{model} · {task}", _metric_of(runs, model, task), figures_dir / f"plateau_{_slug(model)}_{_slug(task)}")
    pareto_notes = []
    for (model, task), group in ranked(cells).groupby(["model", "task"]):
        drawn = plots.pareto_figure(group, f"{model} · {task}: score vs peak memory", group["metric"].iloc[0], figures_dir / f"pareto_{_slug(model)}_{_slug(task)}")
        figures += drawn
        if not drawn:
            pareto_notes.append(f"No Pareto plot for {model} · {task}: no cell's peak memory was measured in isolation (rerun with `bench sweep --isolate`, or on a GPU).")

    manifest = store.read_meta("sweep.json")
    tuning = store.read_meta("tuning.json")
    title = manifest["name"] if manifest else store.root.name
    sections = [
        f"# Results: {title}",
        "",
        f"Store: `{store.root}`; {len(runs)} runs in {len(cells)} cells; {len(unfinished)} runs failed or missing. "
        "Test split, every metric the task records, in points (×100): mean ± sample std [95 % CI] over seeds.",
        "",
        "**Bold**: best in the column (format-failure rates are diagnostics and not ranked). †: not significantly different from the best on the primary "
        "metric (two-sided paired permutation test over the shared test examples, per-example scores averaged over seeds, p ≥ 0.05, scipy.stats.permutation_test). "
        "CIs: Student-t intervals over seeds, clipped to the metric's range, since seeds are the unit of replication; with 2-3 seeds they are wide, and that width is the uncertainty of "
        "a cell mean (a bootstrap cannot resample 2-3 values, and one over test examples would leave the seed-to-seed spread out). "
        "\"failed\": a seed's value is not finite; failed cells are not ranked, fitted or plotted.",
    ]
    for table in tables:
        sections += ["", *table.section("##" if table.name.startswith("results-") else "###")]
    failed_table = unfinished_table(unfinished)
    if len(unfinished):
        sections += ["", *failed_table.section("##")]
    else:
        sections += ["", f"## {failed_table.title}", "", "None: every run the sweep names has an ok record with finite metrics."]
    if tuning:
        sections += ["", _tuning_markdown(tuning)]
    sections += ["", _plateau_markdown(fits), "", "## Figures", ""]
    sections += [
        "Plateau curves: one colour per method in every figure; lines through the seed means, shaded bands from the seed minimum to maximum (the legend "
        "says over how many seeds), dashed the saturating fit, dotted its onset when reached. Pareto: score against peak memory measured in isolation only.",
        "",
        *(f"{note}\n" for note in pareto_notes),
    ]
    sections += [f"![{path.stem}](figures/{path.name})" for path in figures if path.suffix == ".png"]
    folder.mkdir(parents=True, exist_ok=True)
    markdown_path = folder / "results.md"
    markdown_path.write_text("\n".join(sections) + "\n", encoding="utf-8")
    latex_tables = [*tables, failed_table] if len(unfinished) else tables
    (folder / "tables.tex").write_text("\n".join(table.latex() for table in latex_tables), encoding="utf-8")
    runs.to_csv(folder / "runs.csv", index=False)
    cells.merge(marks, on=CELL).drop(columns=["keys"]).to_csv(folder / "cells.csv", index=False)
    metric_rows.drop(columns=["order"]).to_csv(folder / "metrics.csv", index=False)
    write_json_atomic(folder / "summary.json", summary(cells, str(store.root), manifest))
    write_json_atomic(
        folder / "plateau.json", [{"model": m, "task": t, "method": method, **fit.as_dict()} for (m, t), by in fits.items() for method, fit in by.items()]
    )

    report = Report(
        folder=folder, runs=runs, cells=cells, metrics=metric_rows, tables=tables, figures=figures, markdown_path=markdown_path, unfinished=unfinished
    )
    if log_to_wandb:
        settings = manifest["spec"].get("wandb", {}) if manifest else {}
        settings = {"project": DEFAULT_PROJECT, "enabled": True} | settings
        frames = {f"table/{t.name}": t.frame for t in tables} | {"cells": cells.drop(columns=["keys", "seeds", "lr"])}
        report.wandb_mode = wandb_logging.log_report(store.root, settings, title, records, frames, {f"figure/{p.stem}": p for p in figures if p.suffix == ".png"})
    return report


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)
