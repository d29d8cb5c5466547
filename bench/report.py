"""`bench report DIR`: paper-style tables, plateau fits and figures from a results store, under DIR/report/.

What is reported: the sweep's final runs (sweep.json roles "final" and "tuning+final"; every ok record if the store
has no sweep.json), test split, the task's primary metric in points (×100). A cell is (model, task, method, budget);
its value is the mean ± sample std over seeds. Best per column in bold; † marks cells not significantly different
from the best (bench.stats). Trainable % is the achieved count over the base model (head excluded).

Files: results.md (everything), tables.tex, cells.csv (cell aggregates), runs.csv (one row per run), summary.json
(what `bench compare` reads), plateau.json, figures/*.png|pdf.
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
from bench.record import write_json_atomic
from bench.spec import DEFAULT_PROJECT
from bench.store import Store

DISPLAY = {"full": "Full FT", "lora": "LoRA", "dora": "DoRA", "smt": "SMT", "row-sft": "row-SFT", "svfit": "SVFit", "deft": "DEFT"}
CELL = ["model", "task", "method", "budget"]
REFERENCE = "full"
NOT_FINGERPRINTED = {"seed", "lr", "threads", "data_dir"}
SUMMARY_SCHEMA = "peft-bench-summary/1"


def final_records(store: Store) -> list[dict[str, Any]]:
    """The ok records a report covers: the last sweep's final runs, or every ok record without a sweep.json."""
    records = store.records("ok")
    manifest = store.read_meta("sweep.json")
    if manifest is None:
        return records
    final = {cell["key"] for cell in manifest["cells"] if cell["role"] in ("final", "tuning+final")}
    return [record for record in records if record["run_key"] in final]


def config_fingerprint(config: dict[str, Any]) -> str:
    """A short hash of the settings that make a cell comparable (the config minus seed, lr and machine details)."""
    kept = {name: value for name, value in config.items() if name not in NOT_FINGERPRINTED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def runs_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run."""
    rows = []
    for record in records:
        metric = record["task"]["primary_metric"]
        config = record["config"]
        rows.append(
            {
                "key": record["run_key"],
                "model": config["model"],
                "task": record["task"]["name"],
                "method": config["method"],
                "budget": record["params"]["budget"] or ("all" if record["method"]["knob"]["name"] == "all" else "native"),
                "seed": config["seed"],
                "lr": config["lr"],
                "metric": metric,
                "score": 100 * record["metrics"]["test"][metric],
                "validation": 100 * record["metrics"]["validation"][metric],
                "params": record["params"]["achieved"],
                "trainable_pct": record["params"]["achieved_pct"],
                "memory_mb": record["cost"]["peak_memory_bytes"] / 2**20,
                "memory_kind": record["cost"]["memory_kind"],
                "step_time_s": record["cost"]["step_time_median_s"],
                "config_fingerprint": config_fingerprint(config),
            }
        )
    columns = [
        "key",
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
        "step_time_s",
        "config_fingerprint",
    ]
    return pd.DataFrame(rows, columns=columns).sort_values([*CELL, "seed"]).reset_index(drop=True)


def _stat(values: pd.Series) -> pd.Series:
    mean, std, n = stats.mean_std(list(values))
    return pd.Series({"mean": mean, "std": std, "n": n})


def cells_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, task, method, budget): mean, std, n of score, memory and step time."""
    rows = []
    for cell, group in runs.groupby(CELL, sort=True):
        row = dict(zip(CELL, cell))
        for column, name in (("score", "score"), ("memory_mb", "memory_mb"), ("step_time_s", "step_time_s")):
            values = group[column].dropna()
            if len(values):
                aggregate = _stat(values)
                row |= {f"{name}_mean": aggregate["mean"], f"{name}_std": aggregate["std"], f"{name}_n": int(aggregate["n"])}
        row |= {
            "seeds": sorted(group["seed"].tolist()),
            "lr": sorted(set(group["lr"].tolist())),
            "metric": group["metric"].iloc[0],
            "params": group["params"].mean(),
            "trainable_pct": group["trainable_pct"].mean(),
            "memory_kind": ",".join(sorted(set(group["memory_kind"]))),
            "config_fingerprint": ",".join(sorted(set(group["config_fingerprint"]))),
            "keys": group["key"].tolist(),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def tie_marks(store: Store, cells: pd.DataFrame) -> pd.DataFrame:
    """Per cell: is_best (highest mean in its model/task), p_vs_best (paired permutation test) and tied (p >= ALPHA)."""
    marks = cells[CELL].copy()
    marks["is_best"] = False
    marks["p_vs_best"] = math.nan
    marks["tied"] = False
    for _, group in cells.groupby(["model", "task"]):
        best_score = group["score_mean"].max()
        best = group[group["score_mean"] == best_score]
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
    """Per (method, budget): mean ± std over seeds of the unweighted task average (seeds present on every task)."""
    rows = []
    for (method, budget), group in runs.groupby(["method", "budget"]):
        per_seed = group.pivot_table(index="seed", columns="task", values="score")
        if set(per_seed.columns) != set(tasks):
            continue
        averages = per_seed.dropna().mean(axis=1)
        if len(averages):
            mean, std, n = stats.mean_std(list(averages))
            rows.append({"method": method, "budget": budget, "score_mean": mean, "score_std": std, "score_n": n})
    return pd.DataFrame(rows, columns=["method", "budget", "score_mean", "score_std", "score_n"])


def format_score(mean: float, std: float, n: int) -> str:
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


@dataclass
class Table:
    """One model's paper-style table."""

    model: str
    tasks: list[str]
    header: list[str]
    rows: list[list[str]]  # plain text cells
    bold: list[list[bool]]
    tied: list[list[bool]]
    anchor_rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows + self.anchor_rows, columns=self.header)

    def markdown(self) -> str:
        def cell(text: str, bold: bool, tied: bool) -> str:
            return (f"**{text}**" if bold else text) + ("†" if tied else "")

        lines = ["| " + " | ".join(self.header) + " |", "|" + "|".join("---" for _ in self.header) + "|"]
        for row, bold, tied in zip(self.rows, self.bold, self.tied):
            lines.append("| " + " | ".join(cell(t, b, x) for t, b, x in zip(row, bold, tied)) + " |")
        for row in self.anchor_rows:
            lines.append("| " + " | ".join(f"*{t}*" if t else "" for t in row) + " |")
        return "\n".join(lines)

    def latex(self) -> str:
        def escape(text: str) -> str:
            return text.replace("%", r"\%").replace("±", r"$\pm$").replace("_", r"\_").replace("&", r"\&")

        def cell(text: str, bold: bool, tied: bool) -> str:
            text = escape(text)
            return (rf"\textbf{{{text}}}" if bold else text) + (r"$^\dagger$" if tied else "")

        lines = [r"\begin{tabular}{" + "ll" + "r" * (len(self.header) - 2) + "}", r"\toprule", " & ".join(escape(h) for h in self.header) + r" \\", r"\midrule"]
        lines += [" & ".join(cell(t, b, x) for t, b, x in zip(row, bold, tied)) + r" \\" for row, bold, tied in zip(self.rows, self.bold, self.tied)]
        if self.anchor_rows:
            lines.append(r"\midrule")
            lines += [" & ".join(rf"\textit{{{escape(t)}}}" if t else "" for t in row) + r" \\" for row in self.anchor_rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)


def paper_table(model: str, runs: pd.DataFrame, cells: pd.DataFrame, marks: pd.DataFrame) -> Table:
    """Rows (method, budget), columns: trainable %, one per task, and the average when there are several tasks."""
    tasks = sorted(set(cells["task"]))
    average = _average_column(runs, tasks) if len(tasks) > 1 else None
    header = ["Method", "Budget", "Trainable %", *(task.split("/", 1)[-1] for task in tasks)] + (["Avg"] if average is not None else [])
    merged = cells.merge(marks, on=CELL)
    table = Table(model=model, tasks=tasks, header=header, rows=[], bold=[], tied=[])
    best_average = average["score_mean"].max() if average is not None and len(average) else None
    for method, budget in _row_order(cells):
        row_cells = merged[(merged["method"] == method) & (merged["budget"] == budget)]
        texts = [DISPLAY.get(method, method), budget if method != REFERENCE else "100%", f"{row_cells['trainable_pct'].mean():.3f}"]
        bold, tied = [False] * 3, [False] * 3
        for task in tasks:
            match = row_cells[row_cells["task"] == task]
            if match.empty:
                texts.append("–")
                bold.append(False)
                tied.append(False)
                continue
            entry = match.iloc[0]
            texts.append(format_score(entry["score_mean"], entry["score_std"], entry["score_n"]))
            bold.append(bool(entry["is_best"]))
            tied.append(bool(entry["tied"]))
        if average is not None:
            match = average[(average["method"] == method) & (average["budget"] == budget)]
            texts.append("–" if match.empty else format_score(*match.iloc[0][["score_mean", "score_std", "score_n"]]))
            bold.append(not match.empty and match.iloc[0]["score_mean"] == best_average)
            tied.append(False)
        table.rows.append(texts)
        table.bold.append(bold)
        table.tied.append(tied)
    task_set, matched = anchors.matching(model, set(tasks))
    for anchor in matched:
        scores = [""] * (len(header) - 3)
        scores[-1] = f"{anchor.score:.1f}"  # the task-set average: the Avg column, or the single (group) task's column
        table.anchor_rows.append([f"{anchor.method} (paper)", "", anchor.trainable, *scores])
    if matched:
        table.notes.append(
            f"Italic rows: published numbers for {model} on {task_set} ({'; '.join(sorted({a.source for a in matched}))}); other protocols and hyperparameters, shown for orientation."
        )
    else:
        table.notes.append(
            f"No published anchor matches {model} on {', '.join(tasks)} (anchors exist for LLaMA/RoBERTa/DeBERTa on the full commonsense, arithmetic and GLUE sets), so no reference rows are shown."
        )
    return table


def plateau_fits(runs: pd.DataFrame) -> dict[tuple[str, str], dict[str, plateau.PlateauFit]]:
    """Per (model, task or "average") the plateau fit of every method with a budget grid."""
    fits: dict[tuple[str, str], dict[str, plateau.PlateauFit]] = {}
    for (model, task), group in plateau_views(runs):
        for method, method_runs in group[group["method"] != REFERENCE].groupby("method"):
            points = {float(params): list(scores) for params, scores in method_runs.groupby("params")["score"]}
            fits.setdefault((model, task), {})[method] = plateau.fit_plateau(points)
    return fits


def plateau_views(runs: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """(model, task) slices of the runs, plus (model, "average") over tasks when a model has several."""
    views = [((model, task), group) for (model, task), group in runs.groupby(["model", "task"])]
    for model, group in runs.groupby("model"):
        tasks = set(group["task"])
        if len(tasks) > 1:
            complete = group.groupby(["method", "budget", "seed"]).filter(lambda g, every=tasks: set(g["task"]) == every)
            average = complete.groupby(["method", "budget", "seed"], as_index=False).agg(score=("score", "mean"), params=("params", "mean"))
            views.append(((model, "average"), average))
    return views


@dataclass
class Report:
    """What `bench report` wrote."""

    folder: Path
    runs: pd.DataFrame
    cells: pd.DataFrame
    tables: list[Table]
    figures: list[Path]
    markdown_path: Path
    wandb_mode: str | None = None

    def console_text(self) -> str:
        lines = [f"report: {self.markdown_path}  (LaTeX: {self.folder / 'tables.tex'}; figures: {self.folder / 'figures'})"]
        for table in self.tables:
            lines += ["", f"{table.model} (test, points; mean ± std over seeds; bold best, † tied with best)", table.markdown()]
        if self.wandb_mode:
            lines.append(f"\nreport logged to W&B ({self.wandb_mode})")
        return "\n".join(lines)


def summary(cells: pd.DataFrame, source: str, manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The compact per-cell summary `bench compare` reads (and what a committed baseline holds)."""

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
            for _, row in cells.iterrows()
        ],
    }


def _tuning_markdown(tuning: dict[str, Any]) -> str:
    lines = [
        "## Learning-rate tuning",
        "",
        f"Selection: {tuning['selection']}. Tuning seed {tuning['tuning_seed']}, {tuning['grid_size']} learning rates per method (the same tuning budget for every method).",
        "",
        "| Method | Budget | Model · task | Grid (lr: validation score) | Chosen lr |",
        "|---|---|---|---|---|",
    ]
    for entry in tuning["cells"]:
        grid = ", ".join(
            f"{point['lr']:g}: " + (f"{100 * point['validation']:.1f}" if point["validation"] is not None else point["status"]) for point in entry["grid"]
        )
        chosen = f"{entry['chosen_lr']:g}" if entry["chosen_lr"] is not None else "none (every lr failed)"
        lines.append(
            f"| {DISPLAY.get(entry['method'], entry['method'])} | {entry['budget'] or 'all'} | {entry['model']} · {entry['task']} | {grid} | {chosen} |"
        )
    return "\n".join(lines)


def _plateau_markdown(fits: dict[tuple[str, str], dict[str, plateau.PlateauFit]]) -> str:
    def ci(values: tuple[float, float] | None, fmt: str) -> str:
        return f" [{format(values[0], fmt)}, {format(values[1], fmt)}]" if values else ""

    lines = [
        "## Plateau fits",
        "",
        f"Fit y = a − b·exp(−c·(log10 p − log10 p_min)) to the seed means; asymptote a; onset = fewest trainable parameters p where the curve is within "
        f"{plateau.ONSET_TOLERANCE:g} point of a; 95% CIs from {plateau.BOOTSTRAP} bootstrap refits over seeds. At least {plateau.MIN_BUDGETS} budgets are needed.",
        "",
        "| Model | Task | Method | Budgets | Asymptote [95% CI] | Onset params [95% CI] | Peak (params: score) | Notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (model, task), by_method in sorted(fits.items()):
        for method, fit in sorted(by_method.items()):
            asymptote = f"{fit.asymptote:.1f}{ci(fit.asymptote_ci, '.1f')}" if fit.asymptote is not None else fit.status
            onset = (
                "–"
                if fit.onset_params is None
                else (f"> {fit.onset_params:,.0f} (beyond the sweep)" if fit.onset_beyond_sweep else f"{fit.onset_params:,.0f}{ci(fit.onset_ci, ',.0f')}")
            )
            peak = f"{fit.peak_params:,.0f}: {fit.peak_score:.1f}"
            lines.append(f"| {model} | {task} | {DISPLAY.get(method, method)} | {fit.budgets} | {asymptote} | {onset} | {peak} | {'; '.join(fit.notes)} |")
    return "\n".join(lines)


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
    marks = tie_marks(store, cells)
    tables = [paper_table(model, runs[runs["model"] == model], cells[cells["model"] == model], marks) for model in sorted(set(cells["model"]))]
    fits = plateau_fits(runs)

    figures: list[Path] = []
    for (model, task), view in plateau_views(runs):
        metric = (
            runs[runs["model"] == model]["metric"].iloc[0] if task == "average" else runs[(runs["model"] == model) & (runs["task"] == task)]["metric"].iloc[0]
        )
        figures += plots.plateau_figure(
            view,
            fits.get((model, task), {}),
            f"{model} · {task}",
            "average" if task == "average" else metric,
            figures_dir / f"plateau_{_slug(model)}_{_slug(task)}",
        )
    for (model, task), group in cells.groupby(["model", "task"]):
        figures += plots.pareto_figure(
            group, f"{model} · {task}: score vs peak memory", group["metric"].iloc[0], figures_dir / f"pareto_{_slug(model)}_{_slug(task)}"
        )

    manifest = store.read_meta("sweep.json")
    tuning = store.read_meta("tuning.json")
    title = manifest["name"] if manifest else store.root.name
    sections = [
        f"# Results: {title}",
        "",
        f"Store: `{store.root}`; {len(runs)} runs in {len(cells)} cells. Test split, primary metric in points (×100), mean ± std over seeds.",
    ]
    sections.append(
        "**Bold**: best in the column. †: not significantly different from the best (two-sided paired permutation test over the shared test examples, per-example scores averaged over seeds, p ≥ 0.05)."
    )
    for table in tables:
        sections += ["", f"## {table.model}", "", table.markdown(), "", *table.notes]
    if tuning:
        sections += ["", _tuning_markdown(tuning)]
    sections += ["", _plateau_markdown(fits), "", "## Figures", ""]
    sections += [f"![{path.stem}](figures/{path.name})" for path in figures if path.suffix == ".png"]
    folder.mkdir(parents=True, exist_ok=True)
    markdown_path = folder / "results.md"
    markdown_path.write_text("\n".join(sections) + "\n", encoding="utf-8")
    (folder / "tables.tex").write_text("\n\n".join(f"% {t.model}\n{t.latex()}" for t in tables) + "\n", encoding="utf-8")
    runs.to_csv(folder / "runs.csv", index=False)
    cells.merge(marks, on=CELL).drop(columns=["keys"]).to_csv(folder / "cells.csv", index=False)
    write_json_atomic(folder / "summary.json", summary(cells, str(store.root), manifest))
    write_json_atomic(
        folder / "plateau.json", [{"model": m, "task": t, "method": method, **fit.as_dict()} for (m, t), by in fits.items() for method, fit in by.items()]
    )

    report = Report(folder=folder, runs=runs, cells=cells, tables=tables, figures=figures, markdown_path=markdown_path)
    if log_to_wandb:
        settings = manifest["spec"].get("wandb", {}) if manifest else {}
        settings = {"project": DEFAULT_PROJECT, "enabled": True} | settings
        frames = {f"table/{t.model}": t.frame() for t in tables} | {"cells": cells.drop(columns=["keys", "seeds", "lr"])}
        report.wandb_mode = wandb_logging.log_report(store.root, settings, title, records, frames, {f"figure/{p.stem}": p for p in figures if p.suffix == ".png"})
    return report


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)
