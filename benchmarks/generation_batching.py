"""Batched vs one-at-a-time greedy generation on SmolLM2 over real test slices of both decoder families.

    python benchmarks/generation_batching.py [--examples 48] [--batch-size 16] [--threads 2] [--families commonsense,arithmetic]

For each family, the first examples of each committed test set, prompted with the pinned template, are generated with
the family's own `max_new_tokens` (LLM-Adapters: 32 for commonsense, 256 for arithmetic). Asserts that left-padded
batches give exactly the one-at-a-time predictions (generated text and extracted answers), then prints both wall
times and the speed-up (target: at least 4x at batch 16), with the prompt-only (prefill) time, which batching
shortens little on a CPU because one prompt of a hundred tokens already keeps the cores busy.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

from bench.run.models import load_model
from tasks import get_task
from tasks.data_source import DataSource
from tasks.generation import generate
from tasks.instruction import judge
from tasks.prompts import build_prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=48, help="prompts per family")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--families", default="commonsense,arithmetic")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded = load_model("smollm2-135m", "causal-lm")
    model, tokenizer = loaded.model, loaded.tokenizer
    total_single_s = total_batched_s = 0.0
    for family in args.families.split(","):
        task = get_task(f"{family}/all")
        rows = task.load("test", DataSource(), limit=-(-args.examples // len(task.benchmarks)))[: args.examples]
        prompts = [build_prompt(row["instruction"], row["input"]) for row in rows]
        generate(model, tokenizer, prompts[:2], 2, 2)  # warm-up
        single_s, single = 0.0, []
        for prompt in prompts:
            output, seconds = timed_generate(model, tokenizer, [prompt], task.max_new_tokens, 1)
            single, single_s = single + output, single_s + seconds
        batched, batched_s = timed_generate(model, tokenizer, prompts, task.max_new_tokens, args.batch_size)
        prefill_s = timed_generate(model, tokenizer, prompts, 1, args.batch_size)[1]

        assert batched == single, [i for i, (a, b) in enumerate(zip(batched, single)) if a != b]
        assert [judge(row, text) for row, text in zip(rows, batched)] == [
            judge(row, text) for row, text in zip(rows, single)
        ]
        print(
            f"{family}: {len(prompts)} prompts, max_new_tokens {task.max_new_tokens}, {args.threads} threads: identical predictions"
        )
        print(f"  batch 1: {single_s:.1f} s ({single_s / len(prompts):.2f} s/example)")
        print(
            f"  batch {args.batch_size}: {batched_s:.1f} s ({batched_s / len(prompts):.2f} s/example), of which prompts alone {prefill_s:.1f} s"
        )
        print(f"  speed-up: {single_s / batched_s:.2f}x")
        total_single_s, total_batched_s = total_single_s + single_s, total_batched_s + batched_s
    print(
        f"all families: batch 1 {total_single_s:.1f} s, batch {args.batch_size} {total_batched_s:.1f} s, speed-up {total_single_s / total_batched_s:.2f}x"
    )


def timed_generate(
    model: torch.nn.Module, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int
) -> tuple[list[str], float]:
    """The generations of `prompts` and their wall time in seconds."""
    started = time.perf_counter()
    outputs = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    return outputs, time.perf_counter() - started


if __name__ == "__main__":
    main()
