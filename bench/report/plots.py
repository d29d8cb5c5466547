"""Figures of a report: plateau curves (score against trainable parameters) and score against peak memory.

Each figure is written as PNG and PDF. Every figure and table names a method by `display_name` and every figure
draws it in `color`, both the method class's own (read from its source by `methods.catalogue`), so a method looks the
same everywhere. Plateau curves: one line per method through the seed means, a band from the seed minimum to maximum
(its legend entry says over how many seeds), the fitted saturating curve (dashed) with its onset marked when it is
reached within the sweep, and full fine-tuning as a horizontal reference line with its seed band. The Pareto plot
shows only cells whose peak memory was measured in isolation and says below the axes which cells it leaves out.
"""

from __future__ import annotations

import functools
import os
import zlib
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
VARIANT_LEVEL = (0, (4, 1.5, 1, 1.5, 1, 1.5))  # a variant's method without a budget axis: dash-dot-dot
_SPARE = plt.get_cmap("Dark2").colors  # for methods that name no colour of their own
PARAMS_AXIS = "trainable parameters (log scale)"
SCORE_AXIS = "{metric} (points)"
LEVEL_LABEL = "{method} (mean)"
VARIANT_LEVEL_LABEL = "{method}, {variant}"
MAJORITY_LABEL = "Majority answer"
MAJORITY_OFF_AXIS_LABEL = "Majority answer ({score:.1f}, off the axis)"
BANDS_LABEL = "bands: min–max over {seeds} seeds"
FIT_LABEL = "saturating fit"
ONSET_LABEL = "plateau onset"


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


def _seed_counts(runs: pd.DataFrame) -> str:
    counts = sorted(set(runs.groupby(["method", "params"])["score"].count()))
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def plateau_figure(
    runs: pd.DataFrame,
    fits: dict[str, PlateauFit],
    title: str,
    metric: str,
    stem: Path,
    variant: pd.DataFrame | None = None,
    variant_label: str = "",
    majority: float | None = None,
) -> list[Path]:
    """`runs`: one row per run (method, params, score) of one model and task; `fits`: plateau fit per method;
    `variant`: runs of the same grid under other settings (e.g. the papers' fixed recipes), drawn as thin dotted lines
    with hollow markers, seed means, no band (a method without a budget axis as a labelled dash-dot-dot level);
    `majority`: what giving each test set's most common answer scores, drawn as a thin black dotted line (a score near
    it measures the label balance); one further from the scores than their span is left off the axis and its value
    given in the legend."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    shows_variant = variant is not None and len(variant) > 0
    if shows_variant:
        _draw_variant(axes, variant, variant_label)
    fixed = runs["budget"].isin(FIXED_KNOBS)  # full fine-tuning and zero-shot: no budget axis, a horizontal line
    onset_drawn = _draw_budget_curves(axes, runs[~fixed], fits)
    _draw_levels(axes, runs[fixed])
    if majority is not None:
        _draw_majority(axes, majority)
    handles, labels = axes.get_legend_handles_labels()
    for handle, label in _style_keys(runs, fits, onset_drawn, variant_label if shows_variant else None):
        handles.append(handle)
        labels.append(label)
    axes.set_xscale("log")
    axes.set_xlabel(PARAMS_AXIS)
    axes.set_ylabel(SCORE_AXIS.format(metric=metric))
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, stem)


def _draw_variant(axes: plt.Axes, variant: pd.DataFrame, variant_label: str) -> None:
    """The variant's seed means per method: dotted lines with hollow markers, or a level without a budget axis."""
    for method, group in variant.groupby("method", sort=True):
        means = group.groupby("params")["score"].mean()
        style = {"color": color(method), "linestyle": ":", "linewidth": 1.2}
        if group["budget"].isin(FIXED_KNOBS).all():  # dash-dot-dot, labelled: not to be read as the majority line
            label = VARIANT_LEVEL_LABEL.format(method=display_name(method), variant=variant_label)
            axes.axhline(means.mean(), **style | {"linestyle": VARIANT_LEVEL, "label": label})
        else:
            axes.plot(means.index, means.values, marker="o", markerfacecolor="none", **style)


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


def _draw_majority(axes: plt.Axes, majority: float) -> None:
    """The majority answer's score as a black dotted line, kept off the axis when far from the scores."""
    low, high = axes.get_ylim()
    off_axis = not low - (high - low) <= majority <= high + (high - low)
    label = MAJORITY_OFF_AXIS_LABEL.format(score=majority) if off_axis else MAJORITY_LABEL
    axes.axhline(majority, color="black", linestyle=":", linewidth=1, label=label)
    if off_axis:  # further from the scores than their own span: drawing it would squeeze the curves flat
        axes.set_ylim(low, high)


def _style_keys(
    runs: pd.DataFrame, fits: dict[str, PlateauFit], onset_drawn: bool, variant_label: str | None
) -> list[tuple[Artist, str]]:
    """Legend entries for what a line style means (bands, fit, onset, the variant), after the methods'."""
    keys: list[tuple[Artist, str]] = [
        (Patch(color="grey", alpha=0.3, linewidth=0), BANDS_LABEL.format(seeds=_seed_counts(runs)))
    ]
    if any(fit.status == "ok" for fit in fits.values()):
        keys.append((plt.Line2D([], [], color="grey", linestyle="--", linewidth=1), FIT_LABEL))
    if onset_drawn:
        keys.append((plt.Line2D([], [], color="grey", linestyle=":", linewidth=1), ONSET_LABEL))
    if variant_label is not None:
        variant_key = plt.Line2D([], [], color="grey", linestyle=":", linewidth=1.2, marker="o", markerfacecolor="none")
        keys.append((variant_key, variant_label))
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
