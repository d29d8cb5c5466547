"""The measured effect of the plateau study's down-scaling choices (profiles/plateau.yaml), one seed, both tasks.

    PEFT_BENCH_DATA=<data folder> python benchmarks/plateau_ablations.py [--out results/plateau-ablations] [--workers 2] [--plan-only]

Each comparison changes one choice of the study and keeps everything else (its tasks, steps, data, seed 0, budget
100k, one learning rate per method from the middle of the study's grid):

1. SMT's block: 24 (the paper's 1/16 of the width) against 128 (a fixed power-of-two tile, a third of the width);
2. the head probe before calibration: SMT and row-SFT with `head_probe_steps` 100 against 0 (calibration through the
   head as initialised);
3. DEFT's λ: 0 (LoRA with the density measured), 0.01, 0.1 and 1 (the paper's). The study's λ follows the rule printed
   below: the largest λ whose validation score is within one point of λ = 0 on every task, the most density reduction
   that costs at most one point.

Runs go through the harness (`bench.run`) into the `--out` store (already stored runs are reused), so every number
has its record. Prints the tables and writes them to `<out>/ablations.md`. `--plan-only` plans every run through the
harness (settings checked, data read, budgets solved, run keys computed) and lists them, stored or still to train,
without training or writing anything.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.records.record import read_records
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.plan import plan
from bench.sweep.driver import require_full_data
from bench.sweep.spec import load_spec

PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "plateau.yaml"
BUDGET = "100k"
LRS = {"smt": 3e-3, "row-sft": 3e-3, "deft": 1e-3}  # the middle of each method's grid in the study
LAMBDAS = (0.0, 0.01, 0.1, 1.0)
TOLERANCE = 0.01  # the λ rule: at most one point of validation score below λ = 0


@dataclass(frozen=True)
class Variant:
    comparison: str
    label: str
    method: str
    options: tuple[tuple[str, str], ...] = ()
    head_probe_steps: int = 100


VARIANTS = (
    *(Variant("deft-lambda", f"λ = {lam:g}", "deft", (("weight", str(lam)),)) for lam in LAMBDAS),
    Variant("smt-block", "b = 24 (1/16 of the width)", "smt"),
    Variant("smt-block", "b = 128", "smt", (("block_size", "128"),)),
    Variant("head-probe", "SMT, probe 100", "smt"),
    Variant("head-probe", "SMT, probe 0", "smt", head_probe_steps=0),
    Variant("head-probe", "row-SFT, probe 100", "row-sft"),
    Variant("head-probe", "row-SFT, probe 0", "row-sft", head_probe_steps=0),
)


def configs(variant: Variant) -> list[RunConfig]:
    """The variant's run on every task of the study, with the study's settings for that task and method."""
    spec = load_spec(PROFILE)
    method = next(m for m in spec.methods if m.name == variant.method)
    method = replace(method, options=dict(variant.options), lrs=(), lr=LRS[variant.method], lr_by_budget={})
    return [
        replace(
            spec.run_config(method, model, task, BUDGET, 0, LRS[variant.method]),
            head_probe_steps=variant.head_probe_steps,
        )
        for model, task in spec.pairs
    ]


def identity(config: RunConfig) -> str:
    """What tells one run of the study from another."""
    return repr(config.to_dict())


def unique_runs(jobs: dict[tuple[Variant, str], RunConfig]) -> dict[str, RunConfig]:
    """The distinct runs of `jobs` by identity: SMT's default serves two comparisons."""
    return {identity(config): config for config in jobs.values()}


def run_one(config: RunConfig, out: str) -> str:
    run = plan(config)
    if not (Path(out) / f"{run.key}.json").is_file():
        execute(run, Path(out), progress=False)
    return run.key


def plan_table(jobs: dict[tuple[Variant, str], RunConfig], out: Path) -> list[str]:
    """Every run of the study as the harness plans it, with its run key and whether `out` stores it already."""
    keys = {name: plan(config).key for name, config in unique_runs(jobs).items()}
    stored = {key for key in keys.values() if (out / f"{key}.json").is_file()}
    lines = ["| comparison | variant | task | steps | lr | head probe | run key | stored |", "|" + "---|" * 8]
    for (variant, task), config in jobs.items():
        key = keys[identity(config)]
        lines.append(
            f"| {variant.comparison} | {variant.label} | {task} | {config.max_steps} | {config.lr:g} "
            f"| {config.head_probe_steps} | {key[:12]} | {'yes' if key in stored else 'no'} |"
        )
    lines.append(f"{len(keys)} runs planned, {len(stored)} stored, {len(keys) - len(stored)} to train into {out}")
    return lines


def table(variants: list[Variant], records: dict[str, dict[str, Any]], keys: dict[tuple, str]) -> list[str]:
    tasks = sorted({task for (_, task) in keys})
    header = ["Variant", *(f"{task} {split}" for task in tasks for split in ("validation", "test")), "density (%)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in variants:
        cells, densities = [], []
        for task in tasks:
            record = records.get(keys.get((variant, task), ""), {})
            if record.get("status") != "ok":
                cells += ["missing", "missing"]
                continue
            metric = record["task"]["primary_metric"]
            cells += [f"{100 * record['metrics'][split][metric]:.2f}" for split in ("validation", "test")]
            densities.append(f"{record['density']['density']:.2f}")
        lines.append("| " + " | ".join([variant.label, *cells, " / ".join(densities)]) + " |")
    return lines


def chosen_lambda(records: dict[str, dict[str, Any]], keys: dict[tuple, str]) -> float | None:
    """The largest λ within TOLERANCE of λ = 0's validation score on every task (None if a run is missing)."""
    deft = [v for v in VARIANTS if v.comparison == "deft-lambda"]
    tasks = sorted({task for (_, task) in keys})

    def score(variant: Variant, task: str) -> float | None:
        record = records.get(keys[(variant, task)], {})
        return (
            record["metrics"]["validation"][record["task"]["primary_metric"]] if record.get("status") == "ok" else None
        )

    if any(score(v, t) is None for v in deft for t in tasks):
        return None
    reference = deft[0]
    passing = [v for v in deft if all(score(v, t) >= score(reference, t) - TOLERANCE for t in tasks)]
    return max(float(dict(v.options)["weight"]) for v in passing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/plateau-ablations")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--plan-only", action="store_true", help="plan and list every run (stored or to train) without training"
    )
    args = parser.parse_args()
    require_full_data(load_spec(PROFILE))
    jobs = {(variant, config.task): config for variant in VARIANTS for config in configs(variant)}
    if args.plan_only:
        print("\n".join(plan_table(jobs, Path(args.out))))
        return
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(args.workers) as pool:
        futures = {name: pool.submit(run_one, config, args.out) for name, config in unique_runs(jobs).items()}
        done = {name: future.result() for name, future in futures.items()}
    keys = {job: done[identity(config)] for job, config in jobs.items()}
    records = {record["run_key"]: record for record in read_records(Path(args.out))}
    lines = ["# Plateau study: down-scaling ablations", ""]
    for comparison in dict.fromkeys(v.comparison for v in VARIANTS):
        lines += [
            f"## {comparison}",
            "",
            *table([v for v in VARIANTS if v.comparison == comparison], records, keys),
            "",
        ]
    lam = chosen_lambda(records, keys)
    lines.append(
        f"DEFT λ by the rule (largest λ within {100 * TOLERANCE:g} point of λ = 0 on every task's validation split): "
        + (f"{lam:g}" if lam is not None else "not decided (a run is missing)")
    )
    text = "\n".join(lines) + "\n"
    (Path(args.out) / "ablations.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
