"""Report tables: text cells with a style per cell, written by pandas as Markdown and as LaTeX `table` environments
with caption and label, and the tables a report holds.

- paper table (per model): rows (method, budget); trainable %, every top-level test metric of every task as mean ±
  std [95 % t-interval] over seeds, and the average of the primary metrics when there are several tasks; bold: best
  per column (format-failure rates are diagnostics and never bold); †: tied with the best on the primary metric;
  italic rows: published anchors where the setting matches (bench.report.anchors);
- test-set tables: tasks with several test sets (decoder groups), one table per metric (generation accuracy,
  log-likelihood accuracy, format-failure rate, ...) in the papers' layout: a column per set, then the average, and
  the published per-set rows of other models below; ‡: a seed gave one answer to (nearly) the whole set;
- collapsed predictions: the cells and test sets where that happened (bench.records.collapse);
- protocol agreement (decoder tasks): rank correlation of the cells and shared answers of the two protocols;
- cost table: trainable %, adapter size, median step time and peak memory measured in isolation;
- failed and missing runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.records.collapse import COLLAPSE_SHARE
from bench.report import anchors, display, stats
from bench.report.agreement import Agreement
from bench.report.plots import REFERENCE, display_name
from tasks import metrics

CELL = ["model", "task", "method", "budget"]
TIED, COLLAPSED = "†", "‡"  # marks after a score: tied with the best; a seed gave one answer to the whole test set
MARKS = TIED + COLLAPSED
COLLAPSE_METRICS = {"generation": "accuracy", "log-likelihood": "loglik_accuracy"}  # a protocol's per-set metric


def _row_order(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Full fine-tuning first, then methods by name, budgets by trainable parameters."""
    order = frame.groupby(["method", "budget"])["params"].mean().reset_index()
    order["first"] = order["method"] != REFERENCE
    return [
        tuple(row)
        for row in order.sort_values(["first", "method", "params"])[["method", "budget"]].itertuples(index=False)
    ]


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
            bounds = (min(stats.metric_range(metric)[0] for metric in group["metric"]), 100.0)
            rows.append({"method": method, "budget": budget, **stats.aggregate(averages, bounds)})
    return pd.DataFrame(rows, columns=["method", "budget", "mean", "std", "n", "ci_low", "ci_high", "failed"])


def format_score(entry: pd.Series | dict[str, Any]) -> str:
    """Mean ± std [95 % CI] over seeds as text; the mean alone for one seed or an untrained method whose seeds agree
    (bench.report.display); "failed" for a failed metric."""
    if entry["failed"]:
        return "failed"
    if entry["n"] < 2 or display.shown_once(entry):
        return f"{entry['mean']:.1f}"
    return f"{entry['mean']:.1f} ± {entry['std']:.1f} [{entry['ci_low']:.1f}, {entry['ci_high']:.1f}]"


def metric_label(metric: str, decoder: bool) -> str:
    """Column label of a metric from the tasks' labels (tasks.metrics): `accuracy_matched` -> "Acc matched"; a
    decoder's accuracy is its generation accuracy."""
    if decoder and metric in metrics.DECODER_LABELS:
        return metrics.DECODER_LABELS[metric]
    base = next(
        (
            name
            for name in sorted(metrics.LABELS, key=len, reverse=True)
            if metric == name or metric.startswith(f"{name}_")
        ),
        None,
    )
    return metric if base is None else f"{metrics.LABELS[base]}{metric[len(base) :].replace('_', ' ')}"


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

    def markdown(self) -> str:
        marked = self.frame.copy()
        for column in marked.columns:
            marked[column] = [
                _markdown_cell(text, style) for text, style in zip(self.frame[column], self.style[column])
            ]
        return marked.to_markdown(index=False, disable_numparse=True)

    def latex(self) -> str:
        css = {"bold": "font-weight: bold;", "italic": "font-style: italic;", "": ""}
        styler = self.frame.style.hide(axis="index").apply(lambda _: self.style.replace(css), axis=None)
        styler = styler.format(escape="latex").format_index(escape="latex", axis=1)
        columns = "".join(
            "l" if column in ("Method", "Budget", "Task", "Seed", "Status", "Detail") else "r"
            for column in self.frame.columns
        )
        caption = _latex_text(f"{self.title}. {self.caption}")
        return styler.to_latex(
            environment="table", caption=caption, label=self.label, hrules=True, convert_css=True, column_format=columns
        )

    def section(self, level: str = "###", empty: str | None = None) -> list[str]:
        """The table as a Markdown section: title, caption, table, notes; just the title and `empty` when given and
        the table has no row."""
        if empty is not None and self.frame.empty:
            return [f"{level} {self.title}", "", empty]
        return [
            f"{level} {self.title}",
            "",
            self.caption,
            "",
            self.markdown(),
            *(["", *self.notes] if self.notes else []),
        ]


def _markdown_cell(text: str, style: str) -> str:
    if not text or style == "":
        return text
    marker = "**" if style == "bold" else "*"
    core = text.rstrip(MARKS)
    return f"{marker}{core}{marker}{text[len(core) :]}"


def _latex_text(text: str) -> str:
    """`text` escaped for LaTeX by pandas, as the table cells are (a one-cell table's only row)."""
    one_cell = pd.DataFrame([[text]]).style.format(escape="latex").hide(axis="index").hide(axis="columns")
    return one_cell.to_latex().splitlines()[1].removesuffix(r" \\")


def _ranked_metric(metric: str) -> bool:
    """Format-failure rates are diagnostics (lower is better), not scores: never bold."""
    return "format_failure" not in metric


def _table(
    name: str, title: str, caption: str, rows: list[list[str]], styles: list[list[str]], header: list[str]
) -> Table:
    return Table(
        name=name,
        title=title,
        caption=caption,
        label=f"tab:{slug(name)}",
        frame=pd.DataFrame(rows, columns=header),
        style=pd.DataFrame(styles, columns=header) if rows else pd.DataFrame(columns=header),
    )


def plain_table(name: str, title: str, caption: str, rows: list[list[str]], header: list[str]) -> Table:
    """A table without styled cells (diagnostics: no bold best, no italic references)."""
    return _table(name, title, caption, rows, [[""] * len(header) for _ in rows], header)


def _short(task: str) -> str:
    return task.split("/", 1)[-1]


PAPER_CAPTION = (
    "Test metrics in points, mean ± std [95 % t-interval] over seeds; bold: best per column; †: tied with the best on "
    "the primary metric."
)
ANCHOR_NOTE = (
    "Italic rows: published numbers for {model} on {task_set} ({sources}); other protocols and hyperparameters, shown "
    "for orientation."
)
NO_ANCHOR_NOTE = (
    "No published anchor matches {model} on {tasks} (anchors exist for LLaMA/RoBERTa/DeBERTa on the full commonsense, "
    "arithmetic and GLUE sets), so no reference rows are shown."
)
COLLAPSE_NOTE = (
    "{mark}: at least one seed gave one answer to {share:.0%} or more of the test examples; the score is then the label "
    "balance of the test set (see Collapsed predictions)."
)
PAPER_ROW = "{method} (paper)"


def _matching(frame: pd.DataFrame, **values: str) -> pd.DataFrame:
    """The rows of `frame` whose columns hold the given values (`method="lora", budget="1%"`)."""
    chosen = pd.Series(True, index=frame.index)
    for column, value in values.items():
        chosen &= frame[column] == value
    return frame[chosen]


def _best_means(scores: pd.DataFrame) -> dict[tuple[str, str], float]:
    """Per (task, metric) of a ranked metric: the best mean of the usable (not failed) scores, the bold one."""
    return {
        (task, metric): group.loc[~group["failed"].astype(bool), "mean"].max()
        for (task, metric), group in scores.groupby(["task", "metric"])
        if _ranked_metric(metric)
    }


def _score_cell(match: pd.DataFrame, best: float | None, mark: str = "") -> tuple[str, str]:
    """Text and style of a score cell: "–" without a score, else the score with `mark`, bold when a usable score is
    the column's best."""
    if match.empty:
        return "–", ""
    entry = match.iloc[0]
    return format_score(entry) + mark, "bold" if not entry["failed"] and entry["mean"] == best else ""


def _budget_text(method: str, budget: str) -> str:
    return budget if method != REFERENCE else "100%"


@dataclass
class _PaperScores:
    """The score columns of a paper table: one per (task, top-level metric), a task's primary metric first, then Avg
    (the primary metrics' average) when there are several tasks."""

    top: pd.DataFrame  # the top-level (not per-set) metric rows
    columns: pd.DataFrame  # task, metric, primary, decoder: one row per column, in order
    ties: pd.Series  # per (task, method, budget): tied with the best on the primary metric
    collapsed: set[tuple[str, str, str]]  # (task, method, budget) where a seed collapsed on the single test set
    average: pd.DataFrame | None
    best: dict[tuple[str, str], float] = field(init=False)

    def __post_init__(self) -> None:
        self.best = _best_means(self.top)

    @classmethod
    def of(
        cls,
        runs: pd.DataFrame,
        cells: pd.DataFrame,
        marks: pd.DataFrame,
        metric_rows: pd.DataFrame,
        collapses: pd.DataFrame | None,
        tasks: list[str],
    ) -> _PaperScores:
        top = metric_rows[~metric_rows["metric"].str.contains("/")]
        columns = top.groupby(["task", "metric"], as_index=False).agg(
            order=("order", "min"), primary=("primary", "any"), decoder=("decoder", "any")
        )
        single = collapses[collapses["test_set"] == ""] if collapses is not None else None
        return cls(
            top=top,
            columns=columns.sort_values(["task", "primary", "order"], ascending=[True, False, True]),
            ties=cells.merge(marks, on=CELL).set_index(["task", "method", "budget"])["tied"],
            collapsed=set() if single is None else set(zip(single["task"], single["method"], single["budget"])),
            average=_average_column(runs, tasks) if len(tasks) > 1 else None,
        )

    def header(self) -> list[str]:
        labels = [
            f"{_short(task)} {metric_label(metric, decoder)}"
            for task, metric, decoder in self.columns[["task", "metric", "decoder"]].itertuples(index=False)
        ]
        return [*labels, *(["Avg"] if self.average is not None else [])]

    def row(self, method: str, budget: str) -> tuple[list[str], list[str]]:
        """Texts and styles of the score cells of one (method, budget) row."""
        scored = []
        for task, metric, primary in self.columns[["task", "metric", "primary"]].itertuples(index=False):
            match = _matching(self.top, method=method, budget=budget, task=task, metric=metric)
            marked = primary and not match.empty and not match.iloc[0]["failed"]
            mark = self._marks(task, method, budget) if marked else ""
            scored.append(_score_cell(match, self.best.get((task, metric)), mark))
        if self.average is not None:
            usable = self.average[~self.average["failed"].astype(bool)]
            scored.append(_score_cell(_matching(self.average, method=method, budget=budget), usable["mean"].max()))
        return [text for text, _ in scored], [style for _, style in scored]

    def _marks(self, task: str, method: str, budget: str) -> str:
        """† when tied with the best, ‡ when a seed collapsed, on a usable primary score."""
        tied = TIED if bool(self.ties.get((task, method, budget), False)) else ""
        return tied + (COLLAPSED if (task, method, budget) in self.collapsed else "")


def paper_table(
    model: str,
    runs: pd.DataFrame,
    cells: pd.DataFrame,
    marks: pd.DataFrame,
    metric_rows: pd.DataFrame,
    collapses: pd.DataFrame | None = None,
    title: str | None = None,
) -> Table:
    """Rows (method, budget); columns: trainable %, every top-level test metric of every task, and the average of the
    primary metrics when there are several tasks. The primary score of a single-set task is marked ‡ where a seed's
    classifier gave one answer to the whole test set (`collapses`, bench.records.collapse.collapse_frame). `title`:
    the model's title (bench.report.display), `model` without one."""
    tasks = sorted(set(cells["task"]))
    scores = _PaperScores.of(runs, cells, marks, metric_rows, collapses, tasks)
    header = ["Method", "Budget", "Trainable %", *scores.header()]
    rows, styles = [], []
    for method, budget in _row_order(cells):
        trainable = _matching(cells, method=method, budget=budget)["trainable_pct"].mean()
        texts, style = scores.row(method, budget)
        rows.append([display_name(method), _budget_text(method, budget), f"{trainable:.3f}", *texts])
        styles.append(["", "", "", *style])
    task_set, matched = anchors.matching(model, set(tasks))
    for anchor in matched:
        rows.append(_anchor_row(anchor, len(header)))
        styles.append(["italic"] * len(header))
    table = _table(f"results-{model}", title or model, PAPER_CAPTION, rows, styles, header)
    if matched:
        sources = "; ".join(sorted({anchor.source for anchor in matched}))
        table.notes.append(ANCHOR_NOTE.format(model=model, task_set=task_set, sources=sources))
    else:
        table.notes.append(NO_ANCHOR_NOTE.format(model=model, tasks=", ".join(tasks)))
    if scores.collapsed & set(zip(cells["task"], cells["method"], cells["budget"])):
        table.notes.append(COLLAPSE_NOTE.format(mark=COLLAPSED, share=COLLAPSE_SHARE))
    return table


def _anchor_row(anchor: anchors.Anchor, width: int) -> list[str]:
    """A published result as a paper-table row: its score in the last column, the task-set average (the Avg column,
    or the single (group) task's column)."""
    scores = [""] * (width - 3)
    scores[-1] = f"{anchor.score:.1f}"
    return [PAPER_ROW.format(method=anchor.method), "", anchor.trainable, *scores]


GROUP_AVERAGES = {  # a per-set metric and the group's unweighted average of it (tasks.instruction)
    "accuracy": "average",
    "loglik_accuracy": "average_loglik",
    "format_failure_rate": "average_format_failure_rate",
}
SET_TITLE = "{model} · {task}: {label} per test set"
SET_CAPTION = "{label} per test set, points, mean ± std [95 % t-interval] over seeds{examples}{average}."
SET_SLICE = "; the first {size} test examples of each set"
SET_EVERY_EXAMPLE = "; every test example"
SET_AVERAGE = "; Avg: unweighted over the sets"
PUBLISHED_ROW = "{method}, {model} ({source})"
PUBLISHED_NOTE = (
    "Italic rows: published numbers of other models and scales (their full training sets, the papers' protocols and "
    "hyperparameters), for orientation, not comparison."
)
MAJORITY_ROW = "Majority answer"
MAJORITY_NOTE = (
    "Majority answer: the score of giving each set's most common gold answer to all of its test examples, on the same "
    "slice."
)
SET_COLLAPSE_NOTE = (
    "{mark}: at least one seed gave one answer to {share:.0%} or more of the set's test examples; the score there is "
    "the label balance of the slice (see Collapsed predictions)."
)


@dataclass
class _SetMetric:
    """One test-set table: a task's per-set metric `name`, the sets that report it and, for several sets, the group
    average (GROUP_AVERAGES) as the Avg column when the task records it."""

    model: str
    task: str
    name: str
    sets: list[str]  # the test sets with `<set>/<name>`, in the task's order
    shown: pd.DataFrame  # the rows of the per-set columns
    averages: pd.DataFrame  # the rows of the group average
    average: str | None  # the Avg column's metric, None without one

    @property
    def columns(self) -> list[str]:
        return [*(f"{part}/{self.name}" for part in self.sets), *([self.average] if self.average else [])]

    @property
    def header(self) -> list[str]:
        return ["Method", "Budget", *self.sets, *(["Avg"] if self.average else [])]


def _set_metrics(model: str, task: str, per_task: pd.DataFrame, metric_rows: pd.DataFrame) -> list[_SetMetric]:
    """The test-set tables of one task: one per per-set metric (`<set>/<metric>`, stderr columns aside)."""
    in_order = per_task.groupby("metric")["order"].min().sort_values().index
    sets = list(dict.fromkeys(metric.split("/", 1)[0] for metric in in_order))
    found = []
    for name in dict.fromkeys(metric.split("/", 1)[1] for metric in in_order if not metric.endswith("_stderr")):
        with_metric = [part for part in sets if f"{part}/{name}" in in_order]
        average = GROUP_AVERAGES.get(name)
        averages = metric_rows[(metric_rows["task"] == task) & (metric_rows["metric"] == average)]
        shown = per_task[per_task["metric"].isin([f"{part}/{name}" for part in with_metric])]
        column = average if len(with_metric) > 1 and len(averages) else None
        found.append(_SetMetric(model, task, name, with_metric, shown, averages, column))
    return found


def _set_score_rows(
    spec: _SetMetric, cells: pd.DataFrame, collapsed: set[tuple[str, str, str, str]]
) -> tuple[list[list[str]], list[list[str]]]:
    """One row per (method, budget) of the task: a score per set, then Avg; ‡ where a seed collapsed on the set."""
    scores = pd.concat([spec.shown, spec.averages])  # per-set metrics are `<set>/<name>`, the averages are not
    best = _best_means(scores)
    rows, styles = [], []
    for method, budget in _row_order(cells[cells["task"] == spec.task]):
        texts, style = [display_name(method), _budget_text(method, budget)], ["", ""]
        for metric in spec.columns:
            match = _matching(scores, method=method, budget=budget, metric=metric)
            mark = COLLAPSED if (spec.task, method, budget, metric) in collapsed else ""
            text, bold = _score_cell(match, best.get((spec.task, metric)), mark)
            texts.append(text)
            style.append(bold)
        rows.append(texts)
        styles.append(style)
    return rows, styles


def _reference_row(spec: _SetMetric, label: str, budget: str, per_set: dict[str, float], average: str) -> list[str]:
    """An italic reference row: a value per set in points ("–" where it has none), then `average` under Avg."""
    texts = [label, budget, *(f"{per_set[part]:.1f}" if part in per_set else "–" for part in spec.sets)]
    return [*texts, *([average] if spec.average else [])]


def _majority_row(spec: _SetMetric, majority: dict[str, dict[str, float]] | None) -> list[str] | None:
    """Accuracy tables: what giving each set's most common gold answer scores (None without those shares)."""
    floor = {part: share for part, share in (majority or {}).get(spec.task, {}).items() if part in spec.sets}
    if spec.name not in COLLAPSE_METRICS.values() or not floor:
        return None
    complete = all(part in floor for part in spec.sets)
    average = f"{100 * sum(floor[p] for p in spec.sets) / len(spec.sets):.1f}" if complete else "–"
    return _reference_row(spec, MAJORITY_ROW, "–", {part: 100 * share for part, share in floor.items()}, average)


def _published_rows(spec: _SetMetric) -> list[list[str]]:
    """Generation-accuracy tables: the published per-set results of other models (bench.report.anchors)."""
    rows = []
    for anchor in anchors.per_set_anchors(spec.sets) if spec.name == "accuracy" else []:
        label = PUBLISHED_ROW.format(method=anchor.method, model=anchor.model, source=anchor.source)
        per_set = dict(zip(anchors.PER_SET[anchor.task_set], anchor.per_set))
        rows.append(_reference_row(spec, label, anchor.trainable, per_set, f"{anchor.score:.1f}"))
    return rows


def _set_caption(spec: _SetMetric, size: int | None) -> str:
    return SET_CAPTION.format(
        label=metric_label(spec.name, True),
        examples=SET_SLICE.format(size=size) if size else SET_EVERY_EXAMPLE,
        average=SET_AVERAGE if spec.average else "",
    )


def _set_table(
    spec: _SetMetric,
    cells: pd.DataFrame,
    collapsed: set[tuple[str, str, str, str]],
    size: int | None,
    majority: dict[str, dict[str, float]] | None,
    title: str,
) -> Table:
    """The table of one per-set metric: the cells' scores, then the majority answer's and the published rows; `title`:
    the model's."""
    rows, styles = _set_score_rows(spec, cells, collapsed)
    majority_row = _majority_row(spec, majority)
    published = _published_rows(spec)
    references = [*([majority_row] if majority_row else []), *published]
    rows += references
    styles += [["italic"] * len(texts) for texts in references]
    name = f"test-sets-{spec.model}-{spec.task}-{spec.name}"
    title = SET_TITLE.format(model=title, task=spec.task, label=metric_label(spec.name, True))
    table = _table(name, title, _set_caption(spec, size), rows, styles, spec.header)
    if published:
        table.notes.append(PUBLISHED_NOTE)
    if majority_row:
        table.notes.append(MAJORITY_NOTE)
    if any(COLLAPSED in text for row in rows for text in row):
        table.notes.append(SET_COLLAPSE_NOTE.format(mark=COLLAPSED, share=COLLAPSE_SHARE))
    return table


def test_set_tables(
    model: str,
    cells: pd.DataFrame,
    metric_rows: pd.DataFrame,
    slices: dict[str, int | None] | None = None,
    collapses: pd.DataFrame | None = None,
    majority: dict[str, dict[str, float]] | None = None,
    title: str | None = None,
) -> list[Table]:
    """Per task with several test sets (`<set>/<metric>` metrics), one table per metric in the papers' layout: rows
    (method, budget), a column per test set, then the group average. The generation-accuracy table lists below the
    published per-set rows of other models (bench.report.anchors), labelled as such. `slices`: test examples per set, by
    task (None: every example), for the caption. `collapses` (bench.records.collapse.collapse_frame): scores of a set on
    which a seed gave one answer to every example are marked ‡. `majority`: per task, each set's largest share of one
    gold answer (bench.records.collapse.majority_shares), shown as a reference row of the accuracy tables. `title`: the
    model's title (bench.report.display), `model` without one."""
    collapsed = {
        (row.task, row.method, row.budget, f"{row.test_set}/{COLLAPSE_METRICS[row.protocol]}")
        for row in (collapses.itertuples(index=False) if collapses is not None else [])
        if row.protocol in COLLAPSE_METRICS
    }
    per_set = metric_rows[metric_rows["metric"].str.contains("/")]
    return [
        _set_table(spec, cells, collapsed, (slices or {}).get(task), majority, title or model)
        for task, per_task in per_set.groupby("task")
        for spec in _set_metrics(model, task, per_task, metric_rows)
    ]


def cost_table(model: str, cells: pd.DataFrame, title: str | None = None) -> Table:
    """Rows (task, method, budget): trainable %, adapter size, median step time and peak memory measured in isolation;
    `title`: the model's (bench.report.display), `model` without one."""
    header = ["Task", "Method", "Budget", "Trainable %", "Adapter MB", "Step time ms", "Peak memory MB (isolated)"]
    rows = []
    for task in sorted(set(cells["task"])):
        in_task = cells[cells["task"] == task]
        for method, budget in _row_order(in_task):
            cell = in_task[(in_task["method"] == method) & (in_task["budget"] == budget)].iloc[0]
            step = (
                f"{1000 * cell['step_time_s_mean']:.0f} ± {1000 * cell['step_time_s_std']:.0f}"
                if pd.notna(cell["step_time_s_mean"])
                else "–"
            )
            if pd.isna(cell["memory_isolated_mb_mean"]):
                memory = "not isolated"
            else:
                memory = f"{cell['memory_isolated_mb_mean']:,.0f}" + (
                    f" ± {cell['memory_isolated_mb_std']:,.0f}" if cell["memory_isolated_mb_n"] > 1 else ""
                )
                memory += (
                    f" ({int(cell['memory_isolated_mb_n'])}/{len(cell['seeds'])} seeds)"
                    if cell["memory_isolated_mb_n"] < len(cell["seeds"])
                    else ""
                )
            rows.append(
                [
                    _short(task),
                    display_name(method),
                    budget if method != REFERENCE else "100%",
                    f"{cell['trainable_pct']:.3f}",
                    f"{cell['adapter_mb']:.3f}",
                    step,
                    memory,
                ]
            )
    kinds = ", ".join(sorted(set(",".join(cells["memory_kind"]).split(","))))
    caption = (
        f"Cost per cell, mean ± std over seeds. Step time: each run's median training step. Peak memory ({kinds}) only from runs measured in isolation "
        "(CUDA, or the first run of a fresh process); a long-lived worker's peak also holds earlier runs' memory, so those cells read not isolated."
    )
    return _table(f"cost-{model}", f"{title or model} cost", caption, rows, [[""] * len(header) for _ in rows], header)


def unfinished_table(unfinished: pd.DataFrame) -> Table:
    header = ["Model", "Task", "Method", "Budget", "Seed", "Status", "Detail"]
    rows = [
        [
            row["model"],
            row["task"],
            display_name(row["method"]),
            row["budget"],
            str(row["seed"]),
            row["status"],
            row["detail"],
        ]
        for _, row in unfinished.sort_values([*CELL, "seed"]).iterrows()
    ]
    caption = "Runs the sweep names without an ok record, and runs with a failed metric; none of them is ranked, fitted or plotted."
    return _table(
        "failed-and-missing", "Failed and missing runs", caption, rows, [[""] * len(header) for _ in rows], header
    )


def collapse_table(collapses: pd.DataFrame) -> Table:
    """Cells and test sets on which a seed's predictions collapsed to one answer (bench.records.collapse)."""
    header = [
        "Model",
        "Task",
        "Test set",
        "Method",
        "Budget",
        "Protocol",
        "Seeds",
        "Answer",
        "Share %",
        "Constant score",
    ]
    rows = [
        [
            row.model,
            row.task,
            row.test_set or row.task.split("/", 1)[-1],
            display_name(row.method),
            row.budget,
            row.protocol,
            f"{row.collapsed} of {row.seeds}",
            row.answers,
            f"{100 * row.share:.1f}",
            "undefined" if math.isnan(row.constant_score) else f"{100 * row.constant_score:.1f}",
        ]
        for row in collapses.itertuples(index=False)
    ]
    caption = (
        f"Final cells in which a seed gave one answer to {COLLAPSE_SHARE:.0%} or more of a test set's examples, per "
        "protocol. Share: that answer's share of the predictions (mean over the collapsed seeds). Constant score: the "
        "score of giving that answer to every example, in points, which is what the cell's score there measures; a "
        "regression's answer is the value its predictions sit at, whose correlation with the labels is undefined."
    )
    return _table(
        "collapsed-predictions", "Collapsed predictions", caption, rows, [[""] * len(header) for _ in rows], header
    )


def agreement_table(agreements: list[Agreement]) -> Table:
    """The decoder protocols' agreement per (model, task) (bench.report.agreement)."""
    header = ["Model", "Task", "Cells", "Kendall τ-b", "p", "Examples", "Same answer %"]
    rows = [
        [
            a.model,
            a.task,
            str(a.cells),
            "–" if math.isnan(a.tau) else f"{a.tau:.2f}",
            "–" if math.isnan(a.p_value) else f"{a.p_value:.3f}",
            str(a.examples),
            "–" if math.isnan(a.same_answer) else f"{100 * a.same_answer:.1f}",
        ]
        for a in agreements
    ]
    caption = (
        "Generation with answer extraction against lm-eval's log-likelihood choice, on the same test examples. "
        "Kendall τ-b: how alike the two protocols rank the cells by mean accuracy (scipy.stats.kendalltau, two-sided "
        "p; – for fewer than two cells or a constant side). Same answer: share of the test examples, pooled over the "
        "final runs, where the extracted answer is the log-likelihood choice (no extracted answer counts as different)."
    )
    return _table("protocol-agreement", "Protocol agreement", caption, rows, [[""] * len(header) for _ in rows], header)


def slug(text: str) -> str:
    """`text` with every character but letters, digits, "-" and "." replaced by "-" (file names, LaTeX labels)."""
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text)
