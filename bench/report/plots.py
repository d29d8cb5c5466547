"""Figures of a report: plateau curves (score against trainable parameters) and score against peak memory.

Each figure is written as PNG and PDF. Every figure and table names a method by `display_name` and every figure
draws it in `color`, both the method class's own (read from its source by `methods.catalogue`), so a method looks the
same everywhere. Plateau curves: one line per method through the seed means, a band from the seed minimum to maximum
(its legend entry says over how many seeds), the fitted saturating curve (dashed) with its onset marked when it is
reached within the sweep, and full fine-tuning as a horizontal reference line with its seed band. Other stores over the
same grid (the papers' fixed recipes, another target arm) get a panel each beside the store's own, and every panel's
score axis spans its own scores with a margin. The Pareto plot
shows only cells whose peak memory was measured in isolation and says below the axes which cells it leaves out.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.patches import Patch

from bench.report.plateau import PlateauFit
from bench.run.budget import FIXED_KNOBS
from core import plugins
from methods import MethodInfo, catalogue

FORMATS = ("png", "pdf")
REFERENCE = "full"
_SPARE = plt.get_cmap("Dark2").colors  # for methods that name no colour of their own
PARAMS_AXIS = "trainable parameters (log scale)"
SCORE_AXIS = "{metric} (points)"
LEVEL_LABEL = "{method} (mean)"
MAJORITY_LABEL = "Majority answer"
MAJORITY_OFF_AXIS_LABEL = "Majority answer ({score:.1f}, off the axis)"
BANDS_LABEL = "bands: min–max over {seeds} seeds"
FIT_LABEL = "saturating fit"
ONSET_LABEL = "plateau onset"
Y_MARGIN = 0.08  # of a panel's score span, above and below it
MIN_Y_MARGIN = 0.5  # points: the least margin, for panels whose scores barely differ


@functools.cache
def _methods(plugin_folders: str) -> dict[str, MethodInfo]:
    """The method catalogue, parsed once per value of the plugin-folder variable (core.plugins)."""
    return catalogue()


def _method(method: str) -> MethodInfo | None:
    return _methods(os.environ.get(plugins.ENVIRONMENT, "")).get(method)


def display_name(method: str) -> str:
    """The method's name in every table and figure: its class's `display_name`, else `method` itself."""
    info = _method(method)
    return info.display_name if info and info.display_name else method


def color(method: str) -> tuple[float, float, float] | str:
    """The method's colour in every figure: its class's `color`, else a stable pick from a spare palette."""
    info = _method(method)
    return info.color if info and info.color else _SPARE[zlib.crc32(method.encode()) % len(_SPARE)]


def _save(figure: plt.Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for extension in FORMATS:
        path = stem.with_suffix(f".{extension}")
        figure.savefig(
            path, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if extension == "pdf" else None
        )
        paths.append(path)
    plt.close(figure)
    return paths


def _seed_counts(frames: Sequence[pd.DataFrame]) -> str:
    """The seeds per point of the runs in `frames` (one frame per panel): "3", or a range "1-3"."""
    counts = sorted(set().union(*(set(runs.groupby(["method", "params"])["score"].count()) for runs in frames)))
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


@dataclass(frozen=True)
class Panel:
    """One store's plateau curves of a model and task: `runs` (one row per run: method, budget, params, score), the
    plateau `fits` per method, and the panel's title when a figure has several."""

    runs: pd.DataFrame
    fits: dict[str, PlateauFit] = field(default_factory=dict)
    title: str = ""


def plateau_figure(
    runs: pd.DataFrame,
    fits: dict[str, PlateauFit],
    title: str,
    metric: str,
    stem: Path,
    majority: float | None = None,
    others: Sequence[Panel] = (),
    panel_title: str = "",
) -> list[Path]:
    """`runs`: one row per run (method, budget, params, score) of one model and task; `fits`: plateau fit per method;
    `majority`: what giving each test set's most common answer scores, drawn as a thin black dotted line (a score near
    it measures the label balance; one further from the scores than their span is left off the axis and its value
    given in the legend); `others`: other stores' curves of the same grid (the papers' fixed recipes, another target
    arm), each in a panel of its own beside this store's (titled `panel_title`). Every panel's score axis spans its own
    runs' scores with a margin (`score_limits`), so one store's collapsed curves never flatten another's."""
    panels = [Panel(runs, fits, panel_title), *others]
    figure, grid = plt.subplots(1, len(panels), figsize=(6.4 + 4.6 * (len(panels) - 1), 4.2), squeeze=False)
    legend: dict[str, Artist] = {}
    onset_drawn = False
    for axes, panel in zip(grid[0], panels):
        onset_drawn |= _draw_panel(axes, panel, majority)
        axes.set_title(panel.title if len(panels) > 1 else title)
        for handle, name in zip(*axes.get_legend_handles_labels()):
            legend.setdefault(name, handle)
    if len(panels) > 1:
        figure.suptitle(title)
    fitted = any(fit.status == "ok" for panel in panels for fit in panel.fits.values())
    grid[0][0].set_ylabel(SCORE_AXIS.format(metric=metric))
    handles, labels = list(legend.values()), list(legend)
    for handle, name in _style_keys(_seed_counts([panel.runs for panel in panels]), fitted, onset_drawn):
        handles.append(handle)
        labels.append(name)
    grid[0][-1].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, stem)


def _draw_panel(axes: plt.Axes, panel: Panel, majority: float | None) -> bool:
    """One store's curves, levels and the majority line on `axes`, its score axis fitted to them; whether an onset
    was drawn."""
    fixed = panel.runs["budget"].isin(FIXED_KNOBS)  # full fine-tuning and zero-shot: no budget axis, a horizontal line
    onset_drawn = _draw_budget_curves(axes, panel.runs[~fixed], panel.fits)
    _draw_levels(axes, panel.runs[fixed])
    low, high = panel.runs["score"].min(), panel.runs["score"].max()
    if majority is not None:
        low, high = _draw_majority(axes, majority, low, high)
    axes.set_ylim(*score_limits(low, high))
    axes.set_xscale("log")
    axes.set_xlabel(PARAMS_AXIS)
    axes.grid(True, which="both", alpha=0.3)
    return onset_drawn


def score_limits(low: float, high: float) -> tuple[float, float]:
    """The score axis of a panel whose drawn scores (seed bands and levels) span `low` to `high`: that span with
    Y_MARGIN of it (at least MIN_Y_MARGIN points) above and below."""
    margin = max(Y_MARGIN * (high - low), MIN_Y_MARGIN)
    return low - margin, high + margin


def _draw_budget_curves(axes: plt.Axes, runs: pd.DataFrame, fits: dict[str, PlateauFit]) -> bool:
    """Per method with a budget axis: the seed means, their min–max band, the fit and its onset; whether an onset
    was drawn."""
    onset_drawn = False
    for method, group in runs.groupby("method", sort=True):
        by_params = group.groupby("params")["score"]
        params = np.array(sorted(by_params.groups))
        axes.plot(params, by_params.mean().loc[params], marker="o", color=color(method), label=display_name(method))
        axes.fill_between(
            params,
            by_params.min().loc[params],
            by_params.max().loc[params],
            color=color(method),
            alpha=0.2,
            linewidth=0,
        )
        fit = fits.get(method)
        if fit is not None and fit.status == "ok":
            grid = np.logspace(np.log10(params.min()), np.log10(params.max()), 100)
            axes.plot(grid, fit.curve(grid), linestyle="--", color=color(method), linewidth=1)
            if fit.onset_params is not None:
                axes.axvline(fit.onset_params, color=color(method), linestyle=":", linewidth=1)
                onset_drawn = True
    return onset_drawn


def _draw_levels(axes: plt.Axes, runs: pd.DataFrame) -> None:
    """Methods without a budget axis: the seed mean as a horizontal line (solid for full fine-tuning), the seed
    range as a faint band."""
    for method, scores in runs.groupby("method", sort=True)["score"]:
        style = "-" if method == REFERENCE else "-."
        label = LEVEL_LABEL.format(method=display_name(method))
        axes.axhline(scores.mean(), color=color(method), linestyle=style, linewidth=1.2, label=label)
        axes.axhspan(scores.min(), scores.max(), color=color(method), alpha=0.08, linewidth=0)


def _draw_majority(axes: plt.Axes, majority: float, low: float, high: float) -> tuple[float, float]:
    """The majority answer's score as a black dotted line; the score span to show, `low` to `high` widened to it,
    unless it lies further from them than their span: then it stays off the axis and the legend gives its value."""
    off_axis = not low - (high - low) <= majority <= high + (high - low)
    label = MAJORITY_OFF_AXIS_LABEL.format(score=majority) if off_axis else MAJORITY_LABEL
    axes.axhline(majority, color="black", linestyle=":", linewidth=1, label=label)
    return (low, high) if off_axis else (min(low, majority), max(high, majority))


def _style_keys(seeds: str, fitted: bool, onset_drawn: bool) -> list[tuple[Artist, str]]:
    """Legend entries for what a line style means (bands over `seeds` seeds, fit, onset), after the methods'."""
    keys: list[tuple[Artist, str]] = [(Patch(color="grey", alpha=0.3, linewidth=0), BANDS_LABEL.format(seeds=seeds))]
    if fitted:
        keys.append((plt.Line2D([], [], color="grey", linestyle="--", linewidth=1), FIT_LABEL))
    if onset_drawn:
        keys.append((plt.Line2D([], [], color="grey", linestyle=":", linewidth=1), ONSET_LABEL))
    return keys


def pareto_figure(cells: pd.DataFrame, title: str, metric: str, stem: Path) -> list[Path]:
    """`cells`: one row per (method, budget) with score_mean, memory_isolated_mb_mean (NaN: not measured in isolation)
    and memory_kind; draws the isolated cells and their Pareto frontier, nothing when no cell was isolated."""
    measured = cells[cells["memory_isolated_mb_mean"].notna()]
    if measured.empty:
        return []
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for method, group in measured.groupby("method", sort=True):
        axes.scatter(
            group["memory_isolated_mb_mean"], group["score_mean"], label=display_name(method), color=color(method), s=30
        )
        for _, row in group.iterrows():
            axes.annotate(
                row["budget"],
                (row["memory_isolated_mb_mean"], row["score_mean"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    frontier = pareto_frontier(measured)
    axes.step(
        frontier["memory_isolated_mb_mean"],
        frontier["score_mean"],
        where="post",
        color="grey",
        linewidth=1,
        alpha=0.8,
        label="Pareto frontier",
    )
    axes.set_xlabel(f"peak memory measured in isolation (MB, {', '.join(sorted(set(measured['memory_kind'])))})")
    axes.set_ylabel(SCORE_AXIS.format(metric=metric))
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    left_out = cells[cells["memory_isolated_mb_mean"].isna()]
    if len(left_out):
        names = ", ".join(f"{display_name(row['method'])} {row['budget']}" for _, row in left_out.iterrows())
        figure.text(
            0.01, -0.02, f"Left out, memory not measured in isolation: {names}.", fontsize=7, wrap=True, va="top"
        )
    return _save(figure, stem)


def pareto_frontier(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells no other cell beats on both score (higher) and isolated memory (lower), by increasing memory."""
    ordered = cells.sort_values(["memory_isolated_mb_mean", "score_mean"], ascending=[True, False])
    best, keep = -np.inf, []
    for index, row in ordered.iterrows():
        if row["score_mean"] > best:
            keep.append(index)
            best = row["score_mean"]
    return ordered.loc[keep]


def learning_curves_figure(curves: pd.DataFrame, title: str, metric: str, stem: Path) -> list[Path]:
    """`curves`: one row per (method, budget, seed, step) with the validation `score`; one line per method and budget
    through the seed means, against training steps."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for (method, budget), group in curves.groupby(["method", "budget"], sort=True):
        means = group.groupby("step")["score"].mean()
        axes.plot(means.index, means.values, marker=".", color=color(method), label=f"{display_name(method)} {budget}")
    axes.set_xlabel("training step")
    axes.set_ylabel(f"validation {metric} (points)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    seeds = sorted(set(curves.groupby(["method", "budget", "step"])["score"].count()))
    axes.legend(
        title=f"mean over {seeds[0] if len(seeds) == 1 else f'{seeds[0]}-{seeds[-1]}'} seeds",
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    return _save(figure, stem)
