"""Regression history: one commit-stamped entry per tracked store, and the changes a series of entries shows.

`bench track STORE --history DIR` appends an entry to `DIR/<sweep name>/`: one JSON file per entry, written once
(create-exclusive, atomic) and never rewritten. It holds the commit and dirty flag of the store's runs, the date of
its newest run, the hardware class, library versions and data hashes, and per cell (model, task, method, budget) each
seed's score, step time, peak memory and a sha256 of its test predictions.

`bench history DIR/<sweep name>` reads the entries in date order and looks for changes in each cell's score, step
time and memory by binary segmentation: in each segment, each seed's values are centred on that seed's mean, the
split that explains most of the variance (the least-squares location of one step, at least MIN_SIDE entries a
side) is tested by a Welch t-test over the seed values on each side, and it is a change when its p-value is below
ALPHA divided by the number of possible splits in that segment (Bonferroni) and the difference is at least the
quantity's floor (`FLOORS`: the regression gate's 1 point for scores, 10 % for step time and memory); both sides are
then searched again. Identical values on both sides of a split (bit-identical reruns) give no interval: there a
difference of at least the floor is a change (p-value 0). Step time and memory are searched only in a history made
on GPUs: on a CPU they move with the machine's load, so they are shown but not tested (as in `bench compare`). A
change is reported with the commits between which it happened and the libraries whose versions differ across it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from bench.records.environment import hardware_class
from bench.records.schema import check_history_fields
from bench.records.store import Store
from bench.report.write import CELL, final_records, runs_frame
from core.errors import BenchError
from core.files import read_json

ALPHA = 0.05
MIN_SIDE = 2  # entries on each side of a split
QUANTITIES = ("score", "step_time_s", "memory_mb")
FLOORS = {"score": 1.0, "step_time_s": 0.10, "memory_mb": 0.10}  # points; relative to the earlier side's mean
ENTRY_SCHEMA = "peft-bench-history/1"


def _one(values: set[Any], what: str, store: Path) -> Any:
    if len(values) != 1:
        raise BenchError(
            f"{store} holds runs of {len(values)} different {what}s ({', '.join(sorted(map(str, values)))})",
            "track a store whose final runs were all made by one checkout on one machine (rerun the others)",
        )
    return values.pop()


def _number(value: Any) -> float | None:
    """A float, or None for a quantity a run did not measure (None or NaN in the runs frame)."""
    return None if value is None or math.isnan(value) else float(value)


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def history_entry(store_dir: Path) -> dict[str, Any]:
    """The entry `bench track` appends for the store at `store_dir` (see the module docstring)."""
    store = Store(store_dir)
    records = final_records(store)
    if not records:
        raise BenchError(
            f"{store_dir} holds no finished run to track", "run its sweep first: bench sweep SPEC --out STORE"
        )
    manifest = store.read_meta("sweep.json")
    env = [record["env"] for record in records]
    runs = runs_frame(records)
    cells = []
    for cell, group in runs.groupby(list(CELL), sort=True):
        cells.append(
            {
                **dict(zip(CELL, cell)),
                "metric": group["metric"].iloc[0],
                "runs": [
                    {
                        "seed": int(row.seed),
                        "score": float(row.score),
                        "step_time_s": _number(row.step_time_s),
                        "memory_mb": float(row.memory_mb),
                        "predictions_sha256": _sha256(store.predictions_path(row.key)),
                    }
                    for row in group.itertuples()
                ],
            }
        )
    return {
        "schema": ENTRY_SCHEMA,
        "sweep": {"name": manifest["name"], "digest": manifest["digest"]} if manifest else None,
        "commit": _one({e["git"]["commit"] for e in env}, "commit", store_dir),
        "dirty": any(e["git"].get("dirty") for e in env),
        "date": max(record["created_at"] for record in records),
        "hardware": _one({hardware_class(e["hardware"]) for e in env}, "machine", store_dir),
        "cuda": any(e["hardware"].get("cuda") for e in env),
        "libraries": json.loads(
            _one({json.dumps(e["libraries"], sort_keys=True) for e in env}, "library set", store_dir)
        ),
        "data": {name: digest for record in records for name, digest in record["data"]["files"].items()},
        "cells": cells,
    }


def track(store_dir: Path, history: Path) -> Path:
    """Append `store_dir`'s entry to `history/<sweep name>/`; the new file. An identical entry is not written twice."""
    entry = history_entry(store_dir)
    text = json.dumps(entry, indent=1, sort_keys=True) + "\n"
    folder = history / (entry["sweep"]["name"] if entry["sweep"] else store_dir.name)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{entry['date'][:19].replace(':', '')}-{entry['commit'][:12]}{'-dirty' if entry['dirty'] else ''}.json"
    target = folder / name
    if target.exists():
        if target.read_text(encoding="utf-8") == text:
            return target
        raise BenchError(
            f"{target} already holds another entry for this store's commit and date",
            "history entries are never rewritten: move that file away if it is wrong",
        )
    partial = folder / f".{name}.{os.getpid()}.tmp"
    partial.write_text(text, encoding="utf-8")
    try:
        os.link(partial, target)  # fails if another process created the entry meanwhile: nothing is overwritten
    finally:
        partial.unlink()
    return target


def read_history(folder: Path) -> list[dict[str, Any]]:
    """The entries of one tracked sweep, oldest first (by the date of their newest run)."""
    entries = []
    for path in sorted(folder.glob("*.json")):
        data = read_json(path)
        if not isinstance(data, dict) or data.get("schema") != ENTRY_SCHEMA:
            raise BenchError(f"{path} is not a history entry", "keep only files written by `bench track` in the folder")
        check_history_fields(path, data)
        entries.append(data)
    if not entries:
        raise BenchError(
            f"{folder} holds no history entry", f"add one with: bench track STORE --history {folder.parent}"
        )
    return sorted(entries, key=lambda entry: entry["date"])


@dataclass(frozen=True)
class Change:
    """A detected change of one cell's quantity between entry `at - 1` and entry `at`."""

    cell: tuple[str, ...]
    quantity: str
    at: int
    before: float
    after: float
    p_value: float  # 0 when both sides are constant
    commits: tuple[str, str]
    libraries: dict[str, tuple[str, str]]
    hardware: tuple[str, str] | None  # (earlier, later) when the machine changed too


def _split_p(before: list[float], after: list[float], quantity: str, scale: float) -> float | None:
    """The split's Welch p-value if its difference reaches the quantity's floor (0 for two constant sides), else None.
    `scale` is what a relative floor is relative to."""
    difference = float(np.mean(after) - np.mean(before))
    if abs(difference) < FLOORS[quantity] * (1 if quantity == "score" else abs(scale)):
        return None
    rounding = 1e-9 * max(1.0, abs(scale))  # what centring leaves of identical values
    if np.ptp(before) <= rounding and np.ptp(after) <= rounding:
        return 0.0
    return float(stats.ttest_ind(after, before, equal_var=False).pvalue)


def change_points(series: list[dict[int, float]], quantity: str) -> list[tuple[int, float]]:
    """Indices `k` where `series` (per entry, {seed: value}) changes between entries k-1 and k, with p-values.

    Within a segment each seed's values are centred on that seed's mean first: a seed's effect (its data order, its
    initialisation) persists from entry to entry, so only the movement of every seed together is a change."""
    found: list[tuple[int, float]] = []

    def search(lo: int, hi: int) -> None:
        segment = series[lo:hi]
        seeds = {seed for values in segment for seed in values}
        centre = {seed: np.mean([values[seed] for values in segment if seed in values]) for seed in seeds}
        residuals = [[value - centre[seed] for seed, value in values.items()] for values in segment]
        scale = float(np.mean([value for values in segment for value in values.values()]))
        splits = range(MIN_SIDE, len(segment) - MIN_SIDE + 1)
        if not splits:
            return
        sides = {k: (_flat(residuals[:k]), _flat(residuals[k:])) for k in splits}
        k = max(splits, key=lambda k: _between(*sides[k]))  # the least-squares location of a single step
        p = _split_p(*sides[k], quantity, scale)
        if p is not None and p < ALPHA / len(splits):
            found.append((lo + k, p))
            search(lo, lo + k)
            search(lo + k, hi)

    search(0, len(series))
    return sorted(found)


def _flat(rows: list[list[float]]) -> list[float]:
    return [value for row in rows for value in row]


def _between(before: list[float], after: list[float]) -> float:
    """The between-sides sum of squares: what a step at this split explains."""
    n_before, n_after = len(before), len(after)
    return n_before * n_after / (n_before + n_after) * (np.mean(after) - np.mean(before)) ** 2


def _runs(entry: dict[str, Any], cell: tuple[str, ...]) -> list[dict[str, Any]]:
    """The runs an entry holds for `cell` (none if the entry lacks it)."""
    return next((c["runs"] for c in entry["cells"] if tuple(c[name] for name in CELL) == cell), [])


def _series(entries: list[dict[str, Any]], cell: tuple[str, ...], quantity: str) -> list[dict[int, float]] | None:
    """Per entry, {seed: value} of `quantity` in `cell`; None if an entry lacks the cell or the quantity."""
    series = []
    for entry in entries:
        values = {run["seed"]: run[quantity] for run in _runs(entry, cell) if run[quantity] is not None}
        if not values:
            return None
        series.append(values)
    return series


def detect_changes(entries: list[dict[str, Any]]) -> list[Change]:
    """Every change of score, step time and memory in every cell present in all `entries` (module docstring)."""
    cells = sorted({tuple(c[name] for name in CELL) for entry in entries for c in entry["cells"]})
    quantities = QUANTITIES if all(entry["cuda"] for entry in entries) else ("score",)
    changes = []
    for cell in cells:
        for quantity in quantities:
            series = _series(entries, cell, quantity)
            if series is None:
                continue
            for at, p_value in change_points(series, quantity):
                earlier, later = entries[at - 1], entries[at]
                changes.append(
                    Change(
                        cell=cell,
                        quantity=quantity,
                        at=at,
                        before=float(np.mean(list(series[at - 1].values()))),
                        after=float(np.mean(list(series[at].values()))),
                        p_value=p_value,
                        commits=(earlier["commit"], later["commit"]),
                        libraries={
                            name: (earlier["libraries"].get(name, "–"), version)
                            for name, version in later["libraries"].items()
                            if earlier["libraries"].get(name) != version
                        },
                        hardware=None
                        if earlier["hardware"] == later["hardware"]
                        else (earlier["hardware"], later["hardware"]),
                    )
                )
    return changes


def _short(commit: str) -> str:
    return commit[:8]


def trend_markdown(entries: list[dict[str, Any]], changes: list[Change]) -> str:
    """Per cell, a row per entry (commit, date, score mean ± sd, step time, memory), then the detected changes."""
    lines = [
        f"# History of {len(entries)} entries",
        "",
        "Changes: binary segmentation, Welch t-test over the seed values of each side, p < "
        f"{ALPHA:g} / splits tried (Bonferroni), differences of at least 1 point (score) or 10 % (step time, memory"
        " on GPUs only).",
        "",
    ]
    if changes:
        lines += [
            "| Cell | Quantity | Entries | Commits | Before → after | p | Also changed |",
            "|---|---|---|---|---|---|---|",
        ]
        for change in changes:
            also = [f"{name} {old} → {new}" for name, (old, new) in change.libraries.items()]
            also += [f"machine {change.hardware[0]} → {change.hardware[1]}"] if change.hardware else []
            lines.append(
                f"| {' · '.join(change.cell)} | {change.quantity} | {change.at - 1} → {change.at} | "
                f"{_short(change.commits[0])}..{_short(change.commits[1])} | {change.before:.4g} → {change.after:.4g} | "
                f"{change.p_value:.2g} | {', '.join(also) or 'nothing'} |"
            )
    else:
        lines.append("No change detected.")
    cells = sorted({tuple(c[name] for name in CELL) for entry in entries for c in entry["cells"]})
    for cell in cells:
        lines += [
            "",
            f"## {' · '.join(cell)}",
            "",
            "| # | Commit | Date | Score | Step s | Memory MB |",
            "|---|---|---|---|---|---|",
        ]
        for index, entry in enumerate(entries):
            runs = _runs(entry, cell)
            scores = [run["score"] for run in runs]
            score = f"{np.mean(scores):.2f} ± {np.std(scores, ddof=1):.2f}" if len(scores) > 1 else "–"
            times = [run["step_time_s"] for run in runs if run["step_time_s"] is not None]
            memory = [run["memory_mb"] for run in runs]
            lines.append(
                f"| {index} | {_short(entry['commit'])}{' (dirty)' if entry['dirty'] else ''} | {entry['date'][:10]} | "
                f"{score} | {np.mean(times):.3f} | {np.mean(memory):.0f} |"
                if runs
                else f"| {index} | {_short(entry['commit'])} | {entry['date'][:10]} | – | – | – |"
            )
    return "\n".join(lines) + "\n"


def trend_series(entries: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per quantity, per cell (`method budget`, with model and task when several), the seed mean at every entry."""
    cells = sorted({tuple(c[name] for name in CELL) for entry in entries for c in entry["cells"]})
    several = len({cell[:2] for cell in cells}) > 1
    series: dict[str, dict[str, list[float]]] = {quantity: {} for quantity in QUANTITIES}
    for cell in cells:
        label = " ".join(cell if several else cell[2:])
        for quantity in QUANTITIES:
            values = []
            for entry in entries:
                measured = [run[quantity] for run in _runs(entry, cell) if run[quantity] is not None]
                values.append(float(np.mean(measured)) if measured else math.nan)
            series[quantity][label] = values
    return series


def trend_figure(entries: list[dict[str, Any]], changes: list[Change], path: Path) -> Path:
    """Score, step time and memory of every cell against the entries (commits), detected changes marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = trend_series(entries)
    labels = {"score": "score (points)", "step_time_s": "step time (s)", "memory_mb": "peak memory (MB)"}
    figure, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    x = np.arange(len(entries))
    for axis, quantity in zip(axes, QUANTITIES):
        for label, values in series[quantity].items():
            axis.plot(x, values, marker="o", markersize=3, linewidth=1, label=label)
    for change in changes:
        axis = axes[QUANTITIES.index(change.quantity)]
        axis.axvline(change.at - 0.5, color="red", linestyle="--", linewidth=1)
    for axis, quantity in zip(axes, QUANTITIES):
        axis.set_ylabel(labels[quantity])
        axis.grid(alpha=0.3)
    axes[-1].set_xticks(x, [_short(entry["commit"]) for entry in entries], rotation=45, ha="right")
    axes[0].set_title(f"{len(series['score'])} cells over {len(entries)} entries (red: detected change)")
    axes[0].legend(fontsize=6, ncol=4, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
