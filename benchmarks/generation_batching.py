"""Batched vs one-at-a-time greedy generation on SmolLM2 over a real test slice.

    python benchmarks/generation_batching.py [--examples 32] [--batch-size 16] [--max-new-tokens 32] [--threads 2]

Asserts that left-padded batches give exactly the one-at-a-time predictions (generated text and extracted answers),
then prints both wall times and the speed-up (target: at least 4x at batch 16). The slice is the first examples of
each committed commonsense test set, prompted with the pinned template, as the commonsense protocol generates them.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

from bench.models import load_model
from tasks import get_task
from tasks.data_source import DataSource
from tasks.generation import generate
from tasks.instruction import judge
from tasks.prompts import build_prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loaded = load_model("smollm2-135m", "causal-lm")
    task = get_task("commonsense/all")
    rows = task.load("test", DataSource(), limit=-(-args.examples // len(task.benchmarks)))[: args.examples]
    prompts = [build_prompt(row["instruction"], row["input"]) for row in rows]
    generate(loaded.model, loaded.tokenizer, prompts[:2], 2, 2)  # warm-up

    started = time.perf_counter()
    single = [generate(loaded.model, loaded.tokenizer, [prompt], args.max_new_tokens, 1)[0] for prompt in prompts]
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    batched = generate(loaded.model, loaded.tokenizer, prompts, args.max_new_tokens, args.batch_size)
    batched_s = time.perf_counter() - started

    assert batched == single, [i for i, (a, b) in enumerate(zip(batched, single)) if a != b]
    assert [judge(row, text) for row, text in zip(rows, batched)] == [judge(row, text) for row, text in zip(rows, single)]
    print(f"{len(prompts)} prompts, {args.max_new_tokens} new tokens, {args.threads} threads: identical predictions")
    print(f"batch 1: {single_s:.1f} s ({single_s / len(prompts):.2f} s/example)")
    print(f"batch {args.batch_size}: {batched_s:.1f} s ({batched_s / len(prompts):.2f} s/example)")
    print(f"speed-up: {single_s / batched_s:.2f}x")


if __name__ == "__main__":
    main()
