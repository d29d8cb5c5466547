"""Training-step cost of the causal LM loss with the vocabulary projection at the supervised positions only
(`methods.task_loss`) against transformers' loss over every position (`model(**batch).loss`), on SmolLM2.

    python benchmarks/answer_logits.py [--steps 6] [--batch-size 8] [--max-length 256] [--threads 1]

Batches are real rows of the commonsense training mix, encoded as a run encodes them (prompt masked), for full
fine-tuning and for LoRA at rank 5 on q, k, v, up and down. Each step is one forward and backward; the two losses
alternate on the same batch, after one warm-up each, and must agree. Prints the median step time of each, their
ratio, and the logits each materialises (fp32 MB per step, from the outputs themselves).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch

from bench.run.models import load_model
from methods.lora import LoRA
from methods.task_loss import task_loss
from tasks import get_task
from tasks.data_source import DataSource

Step = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per loss and model")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task("commonsense/all")
    tokenizer = load_model("smollm2-135m", "causal-lm").tokenizer
    rows = task.load("train", DataSource())[: args.steps * args.batch_size]
    features = [task.encode(row, tokenizer, args.max_length) for row in rows]
    batches = [
        task.collate(features[start : start + args.batch_size], tokenizer)
        for start in range(0, len(features), args.batch_size)
    ]
    tokens = sum(int(batch["attention_mask"].sum()) for batch in batches)
    print(
        f"{len(batches)} batches of {args.batch_size} commonsense training rows, {tokens / len(batches):.0f} tokens each"
    )
    for setting in ("full fine-tuning", "LoRA r5"):
        torch.manual_seed(0)
        model = load_model("smollm2-135m", "causal-lm").model
        if setting.startswith("LoRA"):
            method = LoRA(model)
            method.apply(5)
            model = method.model
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0  # so the two losses of one batch can be compared
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        compare(
            setting,
            trainable,
            batches,
            {"supervised positions": supervised_step(model), "every position": full_step(model)},
        )


def supervised_step(model: torch.nn.Module) -> Step:
    def step(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        loss, outputs = task_loss(model, batch)
        return loss, outputs.logits

    return step


def full_step(model: torch.nn.Module) -> Step:
    def step(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = model(**batch)
        return outputs.loss, outputs.logits

    return step


def compare(setting: str, trainable: int, batches: list[dict[str, torch.Tensor]], steps: dict[str, Step]) -> None:
    """Time `steps` on every batch (alternating), check their losses agree, print medians and the ratio."""
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    logits_mb: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        step(batches[0])[0].backward()
    for batch in batches:
        losses = []
        for name, step in steps.items():
            started = time.perf_counter()
            loss, logits = step(batch)
            loss.backward()
            seconds[name].append(time.perf_counter() - started)
            logits_mb[name].append(logits.numel() * 4 / 2**20)
            losses.append(loss.item())
        assert abs(losses[0] - losses[1]) <= 1e-5 * abs(losses[1]), losses
    print(f"{setting} ({trainable / 1e6:.2f}M trainable): losses agree on every batch")
    for name in steps:
        print(
            f"  {name}: median step {statistics.median(seconds[name]):.2f} s, logits {statistics.mean(logits_mb[name]):.0f} MB"
        )
    first, second = (statistics.median(values) for values in seconds.values())
    print(f"  step-time ratio (every / supervised): {second / first:.2f}x")


if __name__ == "__main__":
    main()
