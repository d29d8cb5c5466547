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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.records.store import Store
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
        data = report.summary(report.cells_frame(report.runs_frame(records)), str(path), store.read_meta("sweep.json"))
    else:
        raise BenchError(
            f"{path} does not exist",
            "pass a results store, a baseline folder (e.g. results/baselines/default) or a summary.json",
        )
    if (
        not isinstance(data, dict)
        or data.get("schema") != report.SUMMARY_SCHEMA
        or not isinstance(data.get("cells"), list)
    ):
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BenchError(
            f"{path} is not a peft-bench summary (schema {found!r})",
            f"write one with: bench compare STORE {path} --update",
        )
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


@dataclass
class Comparison:
    rows: list[Row]
    new_source: str
    baseline_source: str
    tolerances: Tolerances

    @property
    def regressed(self) -> bool:
        return any(row.status in ("REGRESSION", "missing") for row in self.rows)

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
            status = f"**{row.status}**" if row.status in ("REGRESSION", "missing") else row.status
            lines.append(
                f"| {' · '.join(row.cell)} | {status} | {row.score} | {row.memory} | {row.time} | {'; '.join(row.notes)} |"
            )
        failing = sum(row.status in ("REGRESSION", "missing") for row in self.rows)
        lines += [
            "",
            f"{failing} regression(s) in {len(self.rows)} cells."
            if failing
            else f"No regression in {len(self.rows)} cells.",
        ]
        return "\n".join(lines)


def compare_summaries(new: dict[str, Any], baseline: dict[str, Any], tolerances: Tolerances) -> list[Row]:
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
    return Comparison(
        compare_summaries(load_summary(new), load_summary(baseline), tolerances), str(new), str(baseline), tolerances
    )
