"""Step time and peak memory of every method in fp32 and in bf16 mixed precision, side by side, on MiniLM and SmolLM2.

    python benchmarks/precision_cost.py [--models minilm-l6,smollm2-135m] [--methods floor,full,lora,...] [--repeats 1]
                                        [--steps 6] [--warmup 2] [--threads 1] [--json precision.json]
                                        [--shapes minilm-l6=16x64,smollm2-135m=4x128]

Each measurement is one fresh process of `step_cost.py`'s worker (the method trained as a run trains it, through
`Trainer.fit(Training(method))`), once with Lightning's `32-true` and once with `bf16-mixed` (fp32 master weights,
bf16 autocast), the two back to back for every method and model and the whole round repeated `--repeats` times, so
a slow spell of the machine hits both precisions alike; medians are reported. Shapes default to MiniLM 16 × 64
tokens (the plateau study's batch size; SST-2 sentences fit in 64 tokens) and SmolLM2 4 × 128 (the step-cost
table's batch; at 8 × 256 one round of the eight methods takes about 40 minutes on one thread). Speed-up is fp32
step time over bf16-mixed step time; the memory ratio is bf16-mixed peak over fp32 peak (resident set size during fit on a CPU). Target: a speed-up
of at least SPEED_UP_TARGET for every method on both models; a method that misses it is printed as MISSED, and the
exit status is 1 when a measurement failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import step_cost  # the sibling benchmark, imported from its folder

PRECISIONS = ("32-true", "bf16-mixed")
SPEED_UP_TARGET = 1.6
SHAPES = {"minilm-l6": (16, 64), "smollm2-135m": (4, 128)}
METHODS = "floor,full,lora,dora,smt,row-sft,svfit,deft"


def worker_args(args: argparse.Namespace, model: str, precision: str) -> argparse.Namespace:
    """step_cost's settings for one (model, precision): its shape, this run's steps and threads."""
    batch_size, tokens = args.shapes[model]
    return step_cost.parse_args(
        [
            *("--model", model, "--precision", precision, "--threads", str(args.threads)),
            *("--steps", str(args.steps), "--warmup", str(args.warmup)),
            *("--batch-size", str(batch_size), "--tokens", str(tokens)),
        ]
    )


def measure_all(args: argparse.Namespace) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """results[model][method][precision]: the median over `args.repeats` fresh-process measurements."""
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {
        model: {method: {precision: [] for precision in PRECISIONS} for method in args.methods} for model in args.models
    }
    for _ in range(args.repeats):
        for model in args.models:
            for method in args.methods:
                for precision in PRECISIONS:  # back to back: the pair sees the same machine
                    spec = step_cost.SPECS.get(method, {"budget": "1%"})
                    runs[model][method][precision].append(
                        step_cost.run_worker(method, spec, worker_args(args, model, precision))
                    )
    return {
        model: {
            method: {precision: step_cost.median_of(measured) for precision, measured in by_precision.items()}
            for method, by_precision in by_method.items()
        }
        for model, by_method in runs.items()
    }


def table(results: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> list[str]:
    """One row per model and method: both precisions' step time and peak memory, and their ratios."""
    header = (
        f"{'model':<13} {'method':<9} {'fp32 s':>7} {'bf16 s':>7} {'speed-up':>8} | "
        f"{'fp32 GB':>7} {'bf16 GB':>7} {'mem ×':>6} | target ≥ {SPEED_UP_TARGET:.1f}×"
    )
    lines = [header, "-" * len(header)]
    for model, by_method in results.items():
        for method, pair in by_method.items():
            fp32, bf16 = pair["32-true"], pair["bf16-mixed"]
            failed = next((run for run in (fp32, bf16) if "error" in run), None)
            if failed is not None:
                lines.append(f"{model:<13} {method:<9} failed: {failed['error']}")
                continue
            speed_up = fp32["step_time_s"] / bf16["step_time_s"]
            memory = bf16["peak_fit_bytes"] / fp32["peak_fit_bytes"]
            lines.append(
                f"{model:<13} {method:<9} {fp32['step_time_s']:>7.3f} {bf16['step_time_s']:>7.3f} {speed_up:>7.2f}× | "
                f"{fp32['peak_fit_bytes'] / 1e9:>7.2f} {bf16['peak_fit_bytes'] / 1e9:>7.2f} {memory:>6.2f} | "
                f"{'met' if speed_up >= SPEED_UP_TARGET else 'MISSED'}"
            )
    return lines + step_cost.load_lines(
        run for by_method in results.values() for pair in by_method.values() for run in pair.values()
    )


def shapes(text: str) -> dict[str, tuple[int, int]]:
    """`model=BxT,...` as {model: (batch size, tokens)}, over the defaults."""
    parsed = dict(SHAPES)
    for item in filter(None, text.split(",")):
        model, _, shape = item.partition("=")
        batch_size, _, tokens = shape.partition("x")
        if not (batch_size.isdigit() and tokens.isdigit()):
            raise argparse.ArgumentTypeError(f"shape {item!r} is not model=BATCHxTOKENS, e.g. minilm-l6=16x64")
        parsed[model] = (int(batch_size), int(tokens))
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(SHAPES), help="comma-separated models (default: %(default)s)")
    parser.add_argument("--methods", default=METHODS, help="comma-separated methods and floor (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over every pair; medians are reported")
    parser.add_argument("--steps", type=int, default=6, help="measured steps per process (after warm-up)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up steps excluded from the median")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default: 1)")
    parser.add_argument("--shapes", type=shapes, default=SHAPES, help="model=BATCHxTOKENS,... (see the docstring)")
    parser.add_argument("--json", type=Path, default=None, help="also write every measurement to this JSON file")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    args.models, args.methods = args.models.split(","), args.methods.split(",")
    missing = [model for model in args.models if model not in args.shapes]
    if missing:
        raise SystemExit(f"precision_cost: no shape for {', '.join(missing)}: pass --shapes {missing[0]}=BATCHxTOKENS")
    results = measure_all(args)
    print("\n".join(table(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    failed = [
        f"{model} {method} {precision}"
        for model, by_method in results.items()
        for method, pair in by_method.items()
        for precision, run in pair.items()
        if "error" in run
    ]
    if failed:
        print(f"precision_cost: not measured: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
