"""Whether a sweep's learning-rate picks at an end of their grid hide a better rate beyond it.

    PEFT_BENCH_DATA=<data folder> python benchmarks/grid_edges.py results/plateau [--out results/plateau-edges]

For every tuned group in `<store>/tuning.json` whose pick is an end of a grid of three or more rates, one more run one
grid step beyond that end (the ratio between that end and its neighbour), at the tuning seed and otherwise exactly the
pick's stored settings. The sweep's choices are left as they are: the table says, per such group, how the validation
score moves one step outside the grid, so a reader can tell whether a cell of the curve is held back by its grid.

Runs go through the harness (`bench.run`) into the `--out` store (stored runs are reused), so every number has its
record. Prints the table and writes it to `<out>/edges.md`. Only the API of `bench.run` and `bench.store` is used, so
a study pinned at an older commit is checked with its own code (PYTHONPATH=<its checkout>).
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.run import RunConfig, execute, plan
from bench.store import Store
from core.errors import BenchError

MIN_GRID = 3  # a two-point grid has no interior, so every pick is at an end (the report says so)


def beyond_the_edge(entry: dict[str, Any]) -> float | None:
    """The rate one grid step outside the end where `entry` picked, or None if its pick is inside its grid."""
    grid = sorted(point["lr"] for point in entry.get("grid", []))
    if len(grid) < MIN_GRID or entry["chosen_lr"] not in (grid[0], grid[-1]):
        return None
    beyond = grid[0] ** 2 / grid[1] if entry["chosen_lr"] == grid[0] else grid[-1] ** 2 / grid[-2]
    return float(f"{beyond:.3g}")


def run_one(config: dict[str, Any], out: str) -> str:
    """Run `config` into the store `out` unless it is stored there; its run key."""
    run = plan(RunConfig(**config))
    if not (Path(out) / f"{run.key}.json").is_file():
        execute(run, Path(out), progress=False)
    return run.key


def validation_score(record: dict[str, Any] | None) -> str:
    if record is None:
        return "missing"
    if record["status"] != "ok":
        return f"{record['status']}: {(record.get('error') or '')[:60]}"
    return f"{100 * record['metrics']['validation'][record['task']['primary_metric']]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="a sweep's results store with a tuning.json")
    parser.add_argument("--out", help="the store for the extra runs (default: <store>-edges)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    store = Store(args.store)
    tuning = store.read_meta("tuning.json")
    if tuning is None:
        raise SystemExit(
            str(BenchError(f"{args.store} has no tuning.json", "run a sweep with a learning-rate grid into it first"))
        )
    out = args.out or f"{str(args.store).rstrip('/')}-edges"
    Path(out).mkdir(parents=True, exist_ok=True)
    checks = []
    for entry in tuning["cells"]:
        lr = beyond_the_edge(entry)
        picked = store.read(entry["chosen_key"]) if lr is not None else None
        if picked is not None:
            checks.append((entry, picked, picked["config"] | {"lr": lr}))
    with ProcessPoolExecutor(args.workers) as pool:
        keys = list(pool.map(run_one, [config for _, _, config in checks], [out] * len(checks)))
    edges = Store(out)
    lines = [
        f"# Learning-rate picks at an end of their grid: one step beyond ({args.store}, seed {tuning['tuning_seed']})",
        "",
        "| task | method | budget | grid | pick | validation | beyond | validation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (entry, picked, config), key in zip(checks, keys):
        grid = ", ".join(f"{point['lr']:g}" for point in sorted(entry["grid"], key=lambda point: point["lr"]))
        lines.append(
            f"| {entry['task']} | {entry['method']} | {entry['budget'] or 'all'} | {grid} | {entry['chosen_lr']:g} | "
            f"{validation_score(picked)} | {config['lr']:g} | {validation_score(edges.read(key))} |"
        )
    text = "\n".join(lines) + "\n"
    (Path(out) / "edges.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
