"""Evaluation split across processes (`tasks.base.across_ranks`) against one process, on real test slices.

    python benchmarks/evaluation_split.py [--processes 2] [--glue-examples 872] [--commonsense-examples 8] [--cases sst2,commonsense]

Two evaluations, each timed in one process (one thread) and in `--processes` processes over gloo (one thread each):
MiniLM on SST-2's test sentences (the GLUE protocol), and SmolLM2 on the first examples of each commonsense test set
(generation with extraction, and lm-eval log-likelihood). The model loads before the clock starts. Checks that the
split run's predictions and metrics equal the single process's, then prints wall seconds and the speed-up (target:
close to the process count on a machine with that many free cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.run.models import load_model
from tasks import get_task
from tasks.data_source import DataSource

CASES = {  # name: (model, task, batch size, max length)
    "sst2": ("minilm-l6", "glue/sst2", 64, 128),
    "commonsense": ("smollm2-135m", "commonsense/all", 8, 256),
}


def evaluate(case: str, examples: int) -> tuple[float, list[dict[str, Any]], dict[str, float]]:
    """Wall seconds of one evaluation (model already loaded), its predictions and metrics."""
    torch.set_num_threads(1)
    model_name, task_name, batch_size, max_length = CASES[case]
    task = get_task(task_name)
    rows = task.load("test", DataSource(), examples)
    torch.manual_seed(0)
    loaded = load_model(model_name, task.model_kind, task.num_labels)
    loaded.model.eval()
    if dist.is_initialized():
        dist.barrier()
    started = time.perf_counter()
    result = task.evaluate(loaded.model, loaded.tokenizer, rows, batch_size, max_length)
    if dist.is_initialized():
        dist.barrier()  # the split run ends when its slowest rank does
    return time.perf_counter() - started, result.predictions, result.metrics


def _on_rank(rank: int, world: int, store: str, case: str, examples: int, out: Any) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        out[rank] = evaluate(case, examples)
    finally:
        dist.destroy_process_group()


def split(case: str, examples: int, world: int) -> tuple[float, list[dict[str, Any]], dict[str, float]]:
    with tempfile.TemporaryDirectory() as folder, mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_on_rank, args=(world, f"{folder}/store", case, examples, out), nprocs=world)
        return out[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--glue-examples", type=int, default=872, help="SST-2 test sentences (872: all)")
    parser.add_argument("--commonsense-examples", type=int, default=8, help="per commonsense test set (eight sets)")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated evaluations to time (default: {','.join(CASES)})"
    )
    args = parser.parse_args()
    cases = args.cases.split(",")
    if unknown := sorted(set(cases) - set(CASES)):
        parser.error(f"--cases: unknown {', '.join(unknown)} (known: {', '.join(CASES)})")
    examples = {"sst2": args.glue_examples, "commonsense": args.commonsense_examples}
    print(f"| evaluation | examples | 1 process s | {args.processes} processes s | speed-up | same predictions |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        alone, predictions, metrics = evaluate(case, examples[case])
        together, split_predictions, split_metrics = split(case, examples[case], args.processes)
        same = split_predictions == predictions and split_metrics == metrics
        shown = len(predictions)
        print(
            f"| {case} | {shown} | {alone:.1f} | {together:.1f} | {alone / together:.2f}x | {'yes' if same else 'NO'} |"
        )
        if not same:
            raise SystemExit(f"{case}: the split evaluation's predictions differ from one process's")


if __name__ == "__main__":
    main()
