"""Does bf16 mixed precision change the plateau study's scores? fp32 against bf16-mixed on the same cells and seeds.

    PEFT_BENCH_DATA=<data folder> python benchmarks/precision_parity.py [--out results/precision-parity] [--workers 2]
                                                                          [--plan-only]

Six cells of the plateau study (profiles/plateau.yaml), chosen to cover LoRA, SMT, row-SFT and full fine-tuning, a
small and a large budget, and both tasks, each at seeds 0, 1 and 2 with the study's own final settings (steps,
batches, learning rate picked by its tuning: read from results/plateau/sweep.json), trained twice: Lightning's
`32-true` and `bf16-mixed` (fp32 master weights, bf16 autocast for training and evaluation; calibration stays fp32,
so both arms train the same selected blocks and rows). Runs go through the harness into the `--out` store (stored
runs are reused), so every number has its record.

Per cell, the paired difference bf16 − fp32 of the test score over the three seeds (points), its 95 % t-interval,
and the tolerance it must lie within: ±0.5 points or the fp32 arm's seed standard deviation, whichever is larger.
Then the same over all 18 pairs. The decision printed last: bf16-mixed is adopted for the studies only if the pooled
interval and every cell's interval lie within their tolerance. With three seeds a cell's interval is wide (t at 2
degrees of freedom is 4.3), so a cell can fail to show parity without showing a difference; the pooled interval is
the sharper test. The fp32 arm also reruns the plateau study's own runs, so it reports how many of them it reproduced
exactly under today's code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.records.record import read_records
from bench.report.stats import mean_std, t_interval
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.plan import plan
from bench.sweep.driver import require_full_data
from bench.sweep.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "plateau.yaml"
STUDY = ROOT / "results" / "plateau"
CELLS = (  # (task, method, budget): small and large budgets of each method, both tasks
    ("glue/sst2", "lora", "32k"),
    ("glue/sst2", "row-sft", "20766"),
    ("glue/sst2", "smt", "1M"),
    ("glue/stsb", "smt", "10k"),
    ("glue/stsb", "lora", "1M"),
    ("glue/stsb", "full", None),
)
SEEDS = (0, 1, 2)
PRECISIONS = ("32-true", "bf16-mixed")
TOLERANCE = 0.5  # points: the smallest interval half-width that counts as parity


def study_configs() -> dict[tuple[str, str, str | None, int], tuple[RunConfig, str]]:
    """The study's final run of every cell and seed: its config and its run key in the study's store."""
    sweep = json.loads((STUDY / "sweep.json").read_text(encoding="utf-8"))
    finals = {}
    for cell in sweep["cells"]:
        config = cell["config"]
        index = (config["task"], config["method"], config["budget"], config["seed"])
        if cell["role"] in ("final", "tuning+final") and index[:3] in CELLS and index[3] in SEEDS:
            finals[index] = (RunConfig(**config), cell["key"])
    missing = [(*cell, seed) for cell in CELLS for seed in SEEDS if (*cell, seed) not in finals]
    if missing:
        raise SystemExit(f"precision_parity: {STUDY / 'sweep.json'} has no final run for {missing}")
    return finals


def run_one(config: RunConfig, out: str) -> str:
    run = plan(config)
    if not (Path(out) / f"{run.key}.json").is_file():
        execute(run, Path(out), progress=False)
    return run.key


def score(record: dict[str, Any] | None) -> float | None:
    """The test score in points, or None for a missing or failed run."""
    if not record or record.get("status") != "ok":
        return None
    value = record["metrics"]["test"][record["task"]["primary_metric"]]
    return 100 * value if math.isfinite(value) else None


def interval_text(differences: list[float]) -> tuple[str, tuple[float, float] | None]:
    mean, std, n = mean_std(differences)
    interval = t_interval(mean, std, n)
    if interval is None:
        return f"{mean:+.2f} (n={n})", None
    return f"{mean:+.2f} [{interval[0]:+.2f}, {interval[1]:+.2f}]", interval


def inside(interval: tuple[float, float] | None, tolerance: float) -> bool:
    """Whether the interval lies within ±tolerance."""
    return interval is not None and max(abs(interval[0]), abs(interval[1])) <= tolerance


def parity_table(pairs: dict[tuple, dict[str, float | None]], reproduced: list[float | None]) -> list[str]:
    """The per-cell and pooled paired differences, and the decision."""
    lines = [
        "| task | method | budget | fp32 (mean ± sd) | bf16-mixed (mean ± sd) | bf16 − fp32 [95 % CI] | tolerance | "
        "within |",
        "|" + "---|" * 8,
    ]
    verdicts, pooled = [], []
    for cell in CELLS:
        arms = [pairs[(*cell, seed)] for seed in SEEDS]
        complete = [arm for arm in arms if None not in arm.values()]
        if len(complete) < 2:
            lines.append(f"| {' | '.join(map(str, cell))} | {len(complete)} of 3 seeds complete | | | | |")
            verdicts.append(False)
            continue
        fp32 = [arm["32-true"] for arm in complete]
        bf16 = [arm["bf16-mixed"] for arm in complete]
        differences = [b - a for a, b in zip(fp32, bf16, strict=True)]
        pooled += differences
        (fp32_mean, fp32_sd, _), (bf16_mean, bf16_sd, _) = mean_std(fp32), mean_std(bf16)
        tolerance = max(TOLERANCE, fp32_sd)
        text, interval = interval_text(differences)
        within = inside(interval, tolerance)
        verdicts.append(within)
        lines.append(
            f"| {cell[0]} | {cell[1]} | {cell[2] or 'all'} | {fp32_mean:.2f} ± {fp32_sd:.2f} | "
            f"{bf16_mean:.2f} ± {bf16_sd:.2f} | {text} | ±{tolerance:.2f} | {'yes' if within else 'no'} |"
        )
    text, interval = interval_text(pooled) if len(pooled) > 1 else ("n/a", None)
    pooled_within = inside(interval, TOLERANCE)
    adopted = pooled_within and all(verdicts)
    lines += [
        "",
        f"All {len(pooled)} pairs: bf16 − fp32 = {text} points (tolerance ±{TOLERANCE}): "
        f"{'within' if pooled_within else 'not within'}.",
        f"fp32 arm against the plateau study's own runs: {sum(d == 0 for d in reproduced)} of {len(reproduced)} test "
        f"scores identical, {sum(d is not None and d < 0.01 for d in reproduced)} within 0.01 points (the study ran "
        "partly on other CPUs, whose float rounding differs).",
        "Decision: "
        + (
            "bf16-mixed is adopted for the studies (the pooled interval and every cell's lie within tolerance)."
            if adopted
            else "fp32 stays the studies' precision (see the intervals above for which test failed)."
        ),
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/precision-parity")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--plan-only", action="store_true", help="plan and list every run without training")
    args = parser.parse_args()
    require_full_data(load_spec(PROFILE))
    finals = study_configs()
    jobs = {
        (*index, precision): replace(config, precision=precision)
        for index, (config, _) in finals.items()
        for precision in PRECISIONS
    }
    out = Path(args.out)
    if args.plan_only:
        keys = {job: plan(config).key for job, config in jobs.items()}
        stored = sum((out / f"{key}.json").is_file() for key in keys.values())
        for job, key in keys.items():
            print(f"| {' | '.join(str(part) for part in job)} | {key[:12]} |")
        print(f"{len(keys)} runs planned, {stored} stored, {len(keys) - stored} to train into {out}")
        return
    out.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers) as pool:  # seed by seed, both arms together: a stopped study leaves pairs
        futures = {job: pool.submit(run_one, config, str(out)) for job, config in sorted(jobs.items(), key=_order)}
        keys = {job: future.result() for job, future in futures.items()}
    records = {record["run_key"]: record for record in read_records(out)}
    study = {record["run_key"]: record for record in read_records(STUDY)}
    pairs = {index: {p: score(records.get(keys[(*index, p)])) for p in PRECISIONS} for index in finals}
    reproduced = [  # |fp32 rerun - study| in points, None where either is missing
        None
        if None in (pairs[index]["32-true"], score(study.get(key)))
        else abs(pairs[index]["32-true"] - score(study[key]))
        for index, (_, key) in finals.items()
    ]
    lines = ["# fp32 against bf16-mixed on the plateau study's cells", "", *parity_table(pairs, reproduced)]
    text = "\n".join(lines) + "\n"
    (out / "parity.md").write_text(text, encoding="utf-8")
    print(text)


def _order(item: tuple[tuple, RunConfig]) -> tuple:
    (task, method, budget, seed, precision), _ = item
    return (seed, CELLS.index((task, method, budget)), PRECISIONS.index(precision))


if __name__ == "__main__":
    main()
