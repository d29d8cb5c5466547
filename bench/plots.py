"""Figures of a report: plateau curves (score against trainable parameters) and score against peak memory.

Each figure is written as PNG and PDF. Plateau curves: one line per method through the seed means, a band from the
seed minimum to maximum, the fitted saturating curve (dashed) with its onset marked when the fit succeeded, and full
fine-tuning as a horizontal reference line with its seed band.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.plateau import PlateauFit

FORMATS = ("png", "pdf")


def _save(figure: plt.Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for extension in FORMATS:
        path = stem.with_suffix(f".{extension}")
        figure.savefig(path, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if extension == "pdf" else None)
        paths.append(path)
    plt.close(figure)
    return paths


def plateau_figure(runs: pd.DataFrame, fits: dict[str, PlateauFit], title: str, metric: str, stem: Path, reference: str = "full") -> list[Path]:
    """`runs`: one row per run (method, params, score) of one model and task; `fits`: plateau fit per method."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for method, group in runs[runs["method"] != reference].groupby("method", sort=True):
        color = next(colors)
        by_params = group.groupby("params")["score"]
        params = np.array(sorted(by_params.groups))
        axes.plot(params, by_params.mean().loc[params], marker="o", color=color, label=method)
        axes.fill_between(params, by_params.min().loc[params], by_params.max().loc[params], color=color, alpha=0.2, linewidth=0)
        fit = fits.get(method)
        if fit is not None and fit.status == "ok":
            grid = np.logspace(np.log10(params.min()), np.log10(params.max()), 100)
            axes.plot(grid, fit.curve(grid), linestyle="--", color=color, linewidth=1)
            if not fit.onset_beyond_sweep:
                axes.axvline(fit.onset_params, color=color, linestyle=":", linewidth=1)
    full = runs[runs["method"] == reference]["score"]
    if len(full):
        axes.axhline(full.mean(), color="black", linewidth=1.2, label="full fine-tuning")
        axes.axhspan(full.min(), full.max(), color="black", alpha=0.08, linewidth=0)
    axes.set_xscale("log")
    axes.set_xlabel("trainable parameters (log scale)")
    axes.set_ylabel(f"{metric} (points)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, stem)


def pareto_figure(cells: pd.DataFrame, title: str, metric: str, stem: Path) -> list[Path]:
    """`cells`: one row per (method, budget) with score_mean and memory_mb_mean; the Pareto frontier is drawn."""
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for method, group in cells.groupby("method", sort=True):
        axes.scatter(group["memory_mb_mean"], group["score_mean"], label=method, s=30)
        for _, row in group.iterrows():
            axes.annotate(row["budget"], (row["memory_mb_mean"], row["score_mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    frontier = pareto_frontier(cells)
    axes.step(frontier["memory_mb_mean"], frontier["score_mean"], where="post", color="black", linewidth=1, alpha=0.6, label="Pareto frontier")
    axes.set_xlabel(f"peak memory (MB, {', '.join(sorted(set(cells['memory_kind'])))})")
    axes.set_ylabel(f"{metric} (points)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _save(figure, stem)


def pareto_frontier(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells no other cell beats on both score (higher) and memory (lower), by increasing memory."""
    ordered = cells.sort_values(["memory_mb_mean", "score_mean"], ascending=[True, False])
    best, keep = -np.inf, []
    for index, row in ordered.iterrows():
        if row["score_mean"] > best:
            keep.append(index)
            best = row["score_mean"]
    return ordered.loc[keep]
