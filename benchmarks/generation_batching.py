"""Batched vs one-at-a-time greedy generation on SmolLM2 over real test slices of both decoder families.

    python benchmarks/generation_batching.py [--examples 48] [--batch-size 16] [--threads 2] [--families commonsense,arithmetic]
                                             [--no-bf16]

For each family, the first examples of each committed test set, prompted with the pinned template, are generated with
the family's own `max_new_tokens` (LLM-Adapters: 32 for commonsense, 256 for arithmetic). Asserts that left-padded
batches give exactly the one-at-a-time predictions (generated text and extracted answers), then prints both wall
times and the speed-up (target: at least 4x at batch 16), with the prompt-only (prefill) time, which batching
shortens little on a CPU because one prompt of a hundred tokens already keeps the cores busy.

Then the batched generation again under bf16-mixed, the autocast of Lightning's precision plugin that a
`--precision bf16-mixed` run evaluates in: generated tokens per second in both precisions, their ratio, and how many
extracted answers bf16 shares with fp32 (greedy decoding may take another path once a logit rounds differently).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch
from lightning.pytorch.plugins.precision import MixedPrecision

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
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16-mixed comparison")
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
        if not args.no_bf16:
            print(
                bf16_line(model, tokenizer, rows, prompts, task.max_new_tokens, args.batch_size, (batched, batched_s))
            )
        total_single_s, total_batched_s = total_single_s + single_s, total_batched_s + batched_s
    print(
        f"all families: batch 1 {total_single_s:.1f} s, batch {args.batch_size} {total_batched_s:.1f} s, speed-up {total_single_s / total_batched_s:.2f}x"
    )


def bf16_line(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    fp32: tuple[list[str], float],
) -> str:
    """Batched generation under bf16-mixed against the fp32 one: tokens per second and shared answers."""
    with MixedPrecision("bf16-mixed", "cpu").forward_context():
        bf16 = timed_generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    tokens = [
        sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in run[0]) for run in (fp32, bf16)
    ]
    rates = [count / seconds for count, (_, seconds) in zip(tokens, (fp32, bf16))]
    shared = sum(judge(row, a) == judge(row, b) for row, a, b in zip(rows, fp32[0], bf16[0]))
    return (
        f"  batch {batch_size} generated tokens/s: fp32 {rates[0]:.1f}, bf16-mixed {rates[1]:.1f} "
        f"({rates[1] / rates[0]:.2f}x); the same extracted answer on {shared} of {len(rows)}"
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
