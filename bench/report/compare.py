"""`bench compare NEW BASELINE`: regression check of score, peak memory and step time per cell against a baseline.

A baseline is a compact summary (mean, std, n per cell; `summary.json`, written by `bench report` or by
`bench compare NEW BASELINE --update`), committed under results/baselines/<profile>/. NEW and BASELINE may each be
a results store, a folder holding summary.json, or a summary.json file.

Tolerances (per cell, σ = sqrt((std_new² + std_base²) / 2), the seed standard deviation of either side):
- score: a drop larger than max(k·σ, `score_points`) points is a regression (default k=2, 1 point);
- peak memory: a rise larger than max(k·σ / base, `memory_ratio`) (10 %) of the baseline, gated when both sides
  measured CUDA peak allocation. CPU peak RSS is process-wide: it also holds what earlier runs left in the same
  worker, so it moves with run order and worker count (measured: ±50 % between a sequential and a two-worker sweep
  of the same cells); it is shown against a `cpu_memory_ratio` (25 %) tolerance but does not fail the check;
- step time: the same with `time_ratio` (10 %), gated only when both sides measured on a GPU; on a CPU the step time
  of a shared machine swings several-fold, so it is shown but never fails the check.
A baseline cell missing from NEW fails the check (a method that stopped producing results is a regression); a new
cell is listed. Cells whose settings differ (config fingerprint) are compared and flagged.

Paired test: when both sides are stores, each cell's per-example test scores (averaged over seeds) are compared on
the examples both hold by a paired permutation test; a score drop of at least `score_points` whose paired test
gives p < 0.05 is a regression even within k·σ of the seeds (two seeds rarely give σ a meaning).

Exact mode: when both sides ran on one machine class (CPU model and kernel-picking features, GPUs) with the same
library versions, a rerun must reproduce every prediction bit for bit (the summaries hold each run's predictions
digest), so a cell whose predictions differ fails (DIFFERS) however small the score change, named down to its first
differing example when both sides are stores. Otherwise only the tolerances above apply (statistical mode). The
check also lists the library versions and machines that changed since the baseline.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.records.schema import check_summary_fields
from bench.records.store import Store
from bench.report import stats, wandb_logging
from core.errors import BenchError
from core.files import read_json, write_json_atomic

CELL = ("model", "task", "method", "budget")


@dataclass(frozen=True)
class Tolerances:
    """How far a cell may move before it fails the gate; each a finite number of at least 0 (NaN or inf would switch
    the gate off, a negative value would fail every cell)."""

    k: float = 2.0
    score_points: float = 1.0
    memory_ratio: float = 0.10
    cpu_memory_ratio: float = 0.25
    time_ratio: float = 0.10

    def __post_init__(self) -> None:
        flags = {
            "k": "--k",
            "score_points": "--score-floor",
            "memory_ratio": "--memory-floor",
            "cpu_memory_ratio": "--cpu-memory-floor",
            "time_ratio": "--time-floor",
        }
        for name, flag in flags.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise BenchError(
                    f"tolerance {flag} {value!r} would switch the regression gate off or break it",
                    f"pass {flag} as a finite number of at least 0",
                )


def load_summary(path: Path) -> dict[str, Any]:
    """A summary from a summary.json, a folder holding one, or a results store (computed from its records)."""
    from bench.report import write as report

    if path.is_file():
        data = read_json(path)
    elif (path / "summary.json").is_file():
        data = read_json(path / "summary.json")
    elif path.is_dir():
        store = Store(path)
        records = report.final_records(store)
        if not records:
            raise BenchError(
                f"{path} holds no summary.json and no finished run",
                "pass a results store, a baseline folder with summary.json, or a summary.json",
            )
        cells = report.cells_frame(report.runs_frame(records))
        predictions = {r["run_key"]: store.predictions_path(r["run_key"]) for r in records}
        predictions = {key: file for key, file in predictions.items() if file.is_file()}
        data = report.summary(cells, str(path), store.read_meta("sweep.json"), records, predictions)
    else:
        raise BenchError(
            f"{path} does not exist",
            "pass a results store, a baseline folder (e.g. results/baselines/default) or a summary.json",
        )
    if not isinstance(data, dict) or data.get("schema") != report.SUMMARY_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BenchError(
            f"{path} is not a peft-bench summary (schema {found!r})",
            f"write one with: bench compare STORE {path} --update",
        )
    check_summary_fields(path, data)
    return data


def write_baseline(new: Path, baseline: Path) -> Path:
    """Write NEW's summary as the baseline (BASELINE/summary.json, or BASELINE itself if it ends in .json)."""
    target = baseline if baseline.suffix == ".json" else baseline / "summary.json"
    write_json_atomic(target, load_summary(new))
    return target


@dataclass
class Row:
    cell: tuple[str, ...]
    status: str  # ok, REGRESSION, improved, missing, new
    score: str = ""
    memory: str = ""
    time: str = ""
    notes: list[str] = field(default_factory=list)


def _sigma(new: dict[str, Any], base: dict[str, Any]) -> float:
    return math.sqrt((new["std"] ** 2 + base["std"] ** 2) / 2)


def _relative(
    new: dict[str, Any] | None, base: dict[str, Any] | None, floor: float, k: float, gated: bool, unit: str
) -> tuple[str, bool]:
    """Text for a lower-is-better quantity and whether it regressed."""
    if not new or not base:
        return "–", False
    tolerance = max(k * _sigma(new, base) / base["mean"], floor) if base["mean"] else floor
    change = new["mean"] / base["mean"] - 1 if base["mean"] else 0.0
    regressed = gated and change > tolerance
    text = f"{base['mean']:.4g} → {new['mean']:.4g} {unit} ({change:+.0%}, tol {tolerance:.0%}{'' if gated else ', not gated'})"
    return text, regressed


FAILING = ("REGRESSION", "missing", "DIFFERS")


def exact_mode(new: dict[str, Any], baseline: dict[str, Any]) -> bool:
    """Both sides ran on one machine class with the same library versions: their predictions must then be identical."""
    before, after = baseline.get("provenance"), new.get("provenance")
    return (
        before is not None
        and after is not None
        and len(before["hardware"]) == 1
        and before["hardware"] == after["hardware"]
        and before["libraries"] == after["libraries"]
        and all(len(versions) == 1 for versions in after["libraries"].values())
    )


def _first_difference(stores: tuple[Path | None, Path | None], new_key: str, base_key: str) -> str:
    """Where two runs' predictions files first differ, when both sides are stores holding them."""
    if None in stores:
        return ""
    files = [Store(store).predictions_path(key) for store, key in zip(stores, (new_key, base_key))]
    if not all(file.is_file() for file in files):
        return ""
    new_lines, base_lines = (file.read_text(encoding="utf-8").splitlines() for file in files)
    for new_line, base_line in zip(new_lines, base_lines):
        if new_line != base_line:
            before, after = json.loads(base_line), json.loads(new_line)
            field = next(name for name in after if before.get(name) != after.get(name))
            return f", first at {after['split']} example {after['index']} ({field}: {before.get(field)!r} → {after.get(field)!r})"
    return f" ({len(base_lines)} lines in the baseline's, {len(new_lines)} in the new)"


def prediction_difference(
    fresh: dict[str, Any], base: dict[str, Any], stores: tuple[Path | None, Path | None]
) -> str | None:
    """Exact mode: the first seed whose predictions differ between the two sides of a cell, and where; None if none."""
    new_runs = {run["seed"]: run for run in fresh.get("runs", [])}
    for run in base.get("runs", []):
        other = new_runs.get(run["seed"])
        digests = (run["predictions_sha256"], other and other["predictions_sha256"])
        if None in digests or digests[0] == digests[1]:
            continue
        where = _first_difference(stores, other["key"], run["key"])
        return f"exact mode: predictions of seed {run['seed']} differ from the baseline's{where}"
    return None


def paired_change(
    stores: tuple[Path | None, Path | None], fresh: dict[str, Any], base: dict[str, Any]
) -> tuple[float, float, int] | None:
    """(new − baseline mean per-example score, paired permutation p-value, shared test examples) of one cell, each
    side's scores averaged over its seeds; None unless both sides are stores holding every run's predictions."""
    if None in stores:
        return None
    sides = []
    for store, cell in zip(stores, (fresh, base)):
        files = [Store(store).predictions_path(run["key"]) for run in cell.get("runs", [])]
        if not files or not all(file.is_file() for file in files):
            return None
        sides.append(stats.seed_averaged(stats.read_example_scores(file) for file in files))
    new_scores, base_scores = sides
    shared = set(new_scores) & set(base_scores)
    if not shared:
        return None
    change = sum(new_scores[index] - base_scores[index] for index in shared) / len(shared)
    return change, stats.paired_permutation_p(new_scores, base_scores), len(shared)


def provenance_changes(new: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """What differs between where the two sides' runs came from: library versions and machines."""
    before, after = baseline.get("provenance"), new.get("provenance")
    if before is None or after is None:
        side = "the baseline" if before is None else "the new results"
        return [f"{side} predate(s) provenance in summaries: library versions and machine unknown"]
    changes = [
        f"{name} {', '.join(before['libraries'].get(name, ['–']))} → {', '.join(versions)}"
        for name, versions in after["libraries"].items()
        if before["libraries"].get(name) != versions
    ]
    if before["hardware"] != after["hardware"]:
        changes.append(f"machine {', '.join(before['hardware'])} → {', '.join(after['hardware'])}")
    return changes


@dataclass
class Comparison:
    rows: list[Row]
    new_source: str
    baseline_source: str
    tolerances: Tolerances
    changed: list[str] = field(default_factory=list)  # `provenance_changes`
    exact: bool = False  # `exact_mode`

    @property
    def regressed(self) -> bool:
        return any(row.status in FAILING for row in self.rows)

    def markdown(self) -> str:
        t = self.tolerances
        lines = [
            f"## Regression check: {self.new_source} vs baseline {self.baseline_source}",
            "",
            f"Tolerance: score drop > max({t.k:g}·σ, {t.score_points:g} point); on GPUs, peak-memory rise > max({t.k:g}·σ, {t.memory_ratio:.0%}) and "
            f"step-time rise > max({t.k:g}·σ, {t.time_ratio:.0%}); σ = seed standard deviation. CPU peak RSS (vs {t.cpu_memory_ratio:.0%}) and CPU step time are informational.",
            "",
            "| Cell | Status | Score (points) | Peak memory | Step time | Notes |",
            "|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            status = f"**{row.status}**" if row.status in FAILING else row.status
            lines.append(
                f"| {' · '.join(row.cell)} | {status} | {row.score} | {row.memory} | {row.time} | {'; '.join(row.notes)} |"
            )
        failing = sum(row.status in FAILING for row in self.rows)
        lines += [
            "",
            f"Changed since the baseline: {'; '.join(self.changed)}."
            if self.changed
            else "Same library versions and machine as the baseline.",
            "Exact mode: same machine class and library versions, so every run's predictions must equal the baseline's."
            if self.exact
            else "Statistical mode: the machine or the libraries differ (or are unknown), so scores are compared within"
            " their tolerance.",
            "",
            f"{failing} regression(s) in {len(self.rows)} cells."
            if failing
            else f"No regression in {len(self.rows)} cells.",
        ]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        """The comparison as data: sources, tolerances, verdict, what changed, one entry per cell."""
        return {
            "new": self.new_source,
            "baseline": self.baseline_source,
            "tolerances": asdict(self.tolerances),
            "regressed": self.regressed,
            "exact": self.exact,
            "changed": self.changed,
            "cells": [
                {**dict(zip(CELL, row.cell)), **asdict(row)} | {"cell": " · ".join(row.cell)} for row in self.rows
            ],
        }


def compare_summaries(
    new: dict[str, Any],
    baseline: dict[str, Any],
    tolerances: Tolerances,
    stores: tuple[Path | None, Path | None] = (None, None),
) -> list[Row]:
    """One row per cell of either side; in exact mode (`exact_mode`) a cell whose predictions differ fails, named
    down to its first differing example when both sides are `stores` (new, baseline) holding the predictions."""
    exact = exact_mode(new, baseline)
    new_cells = {tuple(cell[name] for name in CELL): cell for cell in new["cells"]}
    base_cells = {tuple(cell[name] for name in CELL): cell for cell in baseline["cells"]}
    rows = []
    for key in sorted(set(new_cells) | set(base_cells)):
        fresh, base = new_cells.get(key), base_cells.get(key)
        if base is None:
            rows.append(Row(key, "new", score=f"{fresh['score']['mean']:.1f}", notes=["no baseline for this cell"]))
            continue
        if fresh is None:
            rows.append(
                Row(
                    key,
                    "missing",
                    score=f"{base['score']['mean']:.1f} → –",
                    notes=["in the baseline but not in the new results (failed or not run)"],
                )
            )
            continue
        sigma = _sigma(fresh["score"], base["score"])
        tolerance = max(tolerances.k * sigma, tolerances.score_points)
        delta = fresh["score"]["mean"] - base["score"]["mean"]
        status = "REGRESSION" if delta < -tolerance else "improved" if delta > tolerance else "ok"
        row = Row(
            key,
            status,
            score=f"{base['score']['mean']:.1f} → {fresh['score']['mean']:.1f} ({delta:+.1f}, tol {tolerance:.1f})",
        )
        paired = paired_change(stores, fresh, base)
        if paired is not None:
            change, p_value, shared = paired
            row.notes.append(f"paired per-example change {change:+.4g} on {shared} test examples, p {p_value:.2g}")
            if delta <= -tolerances.score_points and change < 0 and p_value < stats.ALPHA:
                row.status = "REGRESSION"  # within the seeds' spread, but the same examples say it dropped
        on_gpu = "cuda" in fresh.get("memory_kind", "") and "cuda" in base.get("memory_kind", "")
        memory_floor = tolerances.memory_ratio if on_gpu else tolerances.cpu_memory_ratio
        row.memory, memory_regressed = _relative(
            fresh.get("memory_mb"), base.get("memory_mb"), memory_floor, tolerances.k, on_gpu, "MB"
        )
        row.time, time_regressed = _relative(
            fresh.get("step_time_s"), base.get("step_time_s"), tolerances.time_ratio, tolerances.k, on_gpu, "s"
        )
        if memory_regressed or time_regressed:
            row.status = "REGRESSION"
            row.notes.append("slower" if time_regressed else "more memory")
        difference = prediction_difference(fresh, base, stores) if exact else None
        if difference:
            row.status = "DIFFERS"
            row.notes.append(difference)
        if fresh.get("config_fingerprint") != base.get("config_fingerprint"):
            row.notes.append("settings differ from the baseline's (config fingerprint)")
        if fresh.get("memory_kind") != base.get("memory_kind"):
            row.notes.append(f"memory measured differently ({base.get('memory_kind')} → {fresh.get('memory_kind')})")
        rows.append(row)
    return rows


def compare_stores(new: Path, baseline: Path, tolerances: Tolerances | None = None) -> Comparison:
    tolerances = tolerances or Tolerances()
    if not (baseline.exists()):
        raise BenchError(
            f"baseline {baseline} does not exist",
            f"create it from a trusted run: bench compare {new} {baseline} --update (and commit it)",
        )
    fresh, base = load_summary(new), load_summary(baseline)
    stores = (store_folder(new), store_folder(baseline))
    return Comparison(
        compare_summaries(fresh, base, tolerances, stores),
        str(new),
        str(baseline),
        tolerances,
        provenance_changes(fresh, base),
        exact_mode(fresh, base),
    )


def log_to_wandb(comparison: Comparison, store: Path) -> str | None:
    """Log `comparison` into the W&B report run of `store` (the new side; settings from its sweep), alerting on a
    regression; the W&B mode, or None when logging is off."""
    manifest = Store(store).read_meta("sweep.json")
    settings = {"project": wandb_logging.DEFAULT_PROJECT, "enabled": True}
    settings |= manifest["spec"].get("wandb", {}) if manifest else {}
    return wandb_logging.log_comparison(
        store, settings, comparison.as_json()["cells"], comparison.regressed, comparison.markdown()
    )


def store_folder(path: Path) -> Path | None:
    """`path` if it is a results store read from its records (not a summary file or a baseline folder)."""
    return path if path.is_dir() and not (path / "summary.json").is_file() else None
