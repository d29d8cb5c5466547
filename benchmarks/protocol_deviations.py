"""The measured effect of the decoder protocol's documented deviations from LLM-Adapters, on SmolLM2-135M and real slices.

    python benchmarks/protocol_deviations.py [--test-examples 8] [--aqua-examples 50] [--max-steps 40] [--batch-size 8] [--seed 0] [--threads 2]
        [--parts masking,beams,aqua] [--run RECORD] [--aqua-run RECORD] [--data-dir DIR]

Four comparisons, each on the same data, model and seed:

1. prompt masking on vs off: two short LoRA runs (0.2 % budget) on the commonsense offline mix through the harness
   (`bench.run.execute`), identical except `mask_prompt`, scored with both protocols on the first `--test-examples`
   of each of the eight commonsense test sets;
2. greedy vs 4-beam decoding: the masked run's model, its greedy test outputs against transformers'
   `generate(num_beams=4)` (LLM-Adapters' setting, no sampling) one prompt at a time, on the same prompts;
3. the AQuA rule: a short run on the arithmetic offline mix scored on the first `--aqua-examples` AQuA problems
   (256 new tokens), accuracy with the primary rule against LLM-Adapters' first-capital rule on the same outputs;
4. splitting on "### Response:": LLM-Adapters decodes prompt + generation and keeps the text between the prompt's
   "### Response:" and the next one (`split(...)[1]`; NVlabs/DoRA keeps the last piece, `[-1]`); here the generated
   text is used whole. The greedy outputs of the masked commonsense run and of the AQuA run are scored all three ways.

`--run` and `--aqua-run` take the model and its greedy outputs from a saved run instead (a study record with its
adapter, e.g. from `results/decoder`): comparisons 2 and 4 then use that run's commonsense test outputs (the first
`--test-examples` of each set for the beams), comparisons 3 and 4 the AQuA outputs of a saved arithmetic run. A
trained model answers in the label words, so beams are measured where the format is learned, not where it is not.

Records of short runs go to a temporary folder; nothing is stored. Prints one Markdown table per comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from bench.run.artifacts import read_record, restore_run
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.plan import plan
from tasks import get_task
from tasks.base import EvalResult
from tasks.data_source import DataSource
from tasks.instruction import InstructionTask, judge
from tasks.prompts import build_prompt, encode_text

RESPONSE = "### Response:"


@dataclasses.dataclass(kw_only=True)
class KeepModel(InstructionTask):
    """The task as it is, remembering the model and examples of its last evaluation (the test split's)."""

    kept: dict[str, Any] = dataclasses.field(default_factory=dict)

    def evaluate(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        examples: list[dict[str, Any]],
        batch_size: int,
        max_length: int,
        progress: bool = False,
    ) -> EvalResult:
        self.kept.update(model=model, tokenizer=tokenizer, examples=examples)
        return super().evaluate(model, tokenizer, examples, batch_size, max_length, progress)


@dataclasses.dataclass
class SavedRun:
    """A saved run's test rows and greedy predictions (aligned), and how to rebuild its trained model."""

    path: Path
    task: InstructionTask
    rows: list[dict[str, Any]]
    predictions: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path, data_dir: str | None) -> SavedRun:
        record = read_record(path)
        task = get_task(record["task"]["name"])
        rows = task.load("test", DataSource(data_dir), record["config"]["test_examples"])
        lines = path.with_name(f"{record['run_key']}.predictions.jsonl").read_text().splitlines()
        predictions = [p for p in map(json.loads, lines) if p["split"] == "test"]
        if len(predictions) != len(rows) or any(rows[p["index"]]["answer"] != p["answer"] for p in predictions):
            raise SystemExit(
                f"{path}: its test predictions do not match the test rows read from {data_dir or 'the committed slices'}; "
                "pass --data-dir with the data folder the run read"
            )
        return cls(path, task, [rows[p["index"]] for p in predictions], predictions)

    def first(self, per_set: int, subtask: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Rows and predictions of the first `per_set` test examples of each set (or of `subtask` only)."""
        taken: dict[str, int] = {}
        kept = []
        for row, prediction in zip(self.rows, self.predictions):
            if subtask in (None, row["subtask"]) and taken.get(row["subtask"], 0) < per_set:
                taken[row["subtask"]] = taken.get(row["subtask"], 0) + 1
                kept.append((row, prediction))
        return [row for row, _ in kept], [prediction for _, prediction in kept]

    def model(self) -> tuple[torch.nn.Module, Any]:
        _, loaded, module = restore_run(self.path, self.task)
        return module.model, loaded.tokenizer


def short_run(
    task: str, args: argparse.Namespace, out: Path, test_examples: int, mask_prompt: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]], KeepModel]:
    """One harness run (LoRA at 0.2 %); its record, test predictions and the task holding the trained model."""
    config = RunConfig(
        method="lora",
        budget="0.2%",
        task=task,
        model="smollm2-135m",
        seed=args.seed,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        max_length=256,
        validation_examples=2,
        test_examples=test_examples,
        eval_batch_size=16,
        mask_prompt=mask_prompt,
        threads=args.threads,
    )
    run = plan(config)
    run.task = KeepModel(**{field.name: getattr(run.task, field.name) for field in dataclasses.fields(run.task)})
    started = time.perf_counter()
    record = execute(run, out, progress=False)
    print(
        f"  {task} mask_prompt={mask_prompt}: {time.perf_counter() - started:.0f} s, run key {record['run_key'][:12]}"
    )
    lines = (out / f"{record['run_key']}.predictions.jsonl").read_text().splitlines()
    return record, [p for p in map(json.loads, lines) if p["split"] == "test"], run.task


def accuracy(rows: list[dict[str, Any]], outputs: list[str]) -> float:
    return sum(judge(row, text)["correct"] for row, text in zip(rows, outputs)) / len(rows)


@torch.inference_mode()
def beam_outputs(model: torch.nn.Module, tokenizer: Any, rows: list[dict[str, Any]], max_new_tokens: int) -> list[str]:
    """transformers' 4-beam search (no sampling), one prompt at a time as LLM-Adapters does, the generated text only."""
    model.eval()
    outputs = []
    for row in rows:
        ids = torch.tensor(
            [encode_text(build_prompt(row["instruction"], row["input"]), tokenizer)],
            device=next(model.parameters()).device,
        )
        sequence = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            num_beams=4,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )[0]
        outputs.append(tokenizer.decode(sequence[ids.shape[1] :], skip_special_tokens=True))
    return outputs


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-examples", type=int, default=8, help="per commonsense test set (eight sets)")
    parser.add_argument("--aqua-examples", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--parts",
        default="masking,beams,aqua",
        help="comparisons to run (the split on '### Response:' is scored on every run's outputs)",
    )
    parser.add_argument("--run", type=Path, help="a saved commonsense run (record path) for the beams and the split")
    parser.add_argument("--aqua-run", type=Path, help="a saved arithmetic run (record path) for the AQuA comparisons")
    parser.add_argument(
        "--data-dir", default=os.environ.get("PEFT_BENCH_DATA"), help="the data folder the saved runs read"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(args.threads)
    trains = (
        "masking" in parts or ("beams" in parts and args.run is None) or ("aqua" in parts and args.aqua_run is None)
    )
    print(
        f"SmolLM2-135M; short runs: LoRA 0.2 %, {args.max_steps} steps of batch {args.batch_size}, seed {args.seed}; "
        "each table as soon as its runs end"
        if trains
        else "SmolLM2-135M; the saved runs' own outputs, no training"
    )
    with tempfile.TemporaryDirectory(prefix="peft-bench-deviations-") as folder:
        out = Path(folder)
        if "masking" in parts or ("beams" in parts and args.run is None):
            masked, masked_predictions, masked_task = short_run("commonsense/all", args, out, args.test_examples)
            rows = masked_task.kept["examples"]
            split_table(rows, masked_predictions, "the masked commonsense run")
            if "masking" in parts:
                unmasked = short_run("commonsense/all", args, out, args.test_examples, mask_prompt=False)[0]
                masking_table(masked, unmasked, len(rows), args.test_examples)
            if "beams" in parts and args.run is None:
                model, tokenizer = masked_task.kept["model"], masked_task.kept["tokenizer"]
                beam_table(rows, masked_predictions, model, tokenizer, masked_task.max_new_tokens)
        if args.run is not None:
            saved = SavedRun.read(args.run, args.data_dir)
            split_table(saved.rows, saved.predictions, f"saved run {args.run.name[:12]}")
            if "beams" in parts:
                rows, predictions = saved.first(args.test_examples)
                beam_table(rows, predictions, *saved.model(), saved.task.max_new_tokens)
        if "aqua" in parts:
            if args.aqua_run is None:
                _, aqua_predictions, aqua_task = short_run("arithmetic/aqua", args, out, args.aqua_examples)
                aqua_rows = aqua_task.kept["examples"]
            else:
                aqua_rows, aqua_predictions = SavedRun.read(args.aqua_run, args.data_dir).first(
                    args.aqua_examples, "aqua"
                )
            aqua_table(aqua_predictions)
            split_table(
                aqua_rows,
                aqua_predictions,
                "the AQuA run" if args.aqua_run is None else f"saved run {args.aqua_run.name[:12]}",
            )


def masking_table(masked: dict[str, Any], unmasked: dict[str, Any], examples: int, per_set: int) -> None:
    print(f"\n1. Prompt masking, commonsense/all, {examples} test examples ({per_set} per set)\n")
    metrics = [
        ("average", "generation accuracy (average of sets)"),
        ("average_loglik", "log-likelihood accuracy (average)"),
        ("average_format_failure_rate", "format failures (average)"),
    ]
    print(
        table(
            ["metric", "masked (default)", "unmasked (LLM-Adapters)"],
            [
                [label, percent(masked["metrics"]["test"][key]), percent(unmasked["metrics"]["test"][key])]
                for key, label in metrics
            ],
        )
    )


def beam_table(
    rows: list[dict[str, Any]],
    predictions: list[dict[str, Any]],
    model: torch.nn.Module,
    tokenizer: Any,
    max_new_tokens: int,
) -> None:
    """4-beam outputs of `model` on `rows` against its greedy `predictions`: accuracy, format failures, changed answers."""
    started = time.perf_counter()
    beams = beam_outputs(model, tokenizer, rows, max_new_tokens)
    greedy = [p["output"] for p in predictions]
    print(
        f"\n2. Greedy vs 4-beam decoding, one model, the same {len(rows)} prompts (beam search {time.perf_counter() - started:.0f} s)\n"
    )
    failures = {
        name: sum(judge(row, text)["extracted"] is None for row, text in zip(rows, texts)) / len(rows)
        for name, texts in (("greedy", greedy), ("beams", beams))
    }
    print(
        table(
            ["decoding", "accuracy", "format failures"],
            [
                ["greedy (here)", percent(accuracy(rows, greedy)), percent(failures["greedy"])],
                ["4 beams (LLM-Adapters)", percent(accuracy(rows, beams)), percent(failures["beams"])],
            ],
        )
    )
    changed = sum(judge(row, a)["extracted"] != judge(row, b)["extracted"] for row, a, b in zip(rows, greedy, beams))
    print(
        f"\nextracted answer differs on {changed} of {len(rows)}; generated text differs on {sum(a != b for a, b in zip(greedy, beams))}"
    )


def aqua_table(aqua: list[dict[str, Any]]) -> None:
    print(f"\n3. AQuA rule, arithmetic/aqua, {len(aqua)} problems, the same outputs\n")
    rules = (
        ("option letter after the last answer cue (here)", "correct", "extracted"),
        ("first capital A-E (LLM-Adapters)", "correct_first_capital", "extracted_first_capital"),
    )
    print(
        table(
            ["rule", "accuracy", "no letter found"],
            [
                [
                    name,
                    percent(sum(p[correct] for p in aqua) / len(aqua)),
                    percent(sum(p[found] is None for p in aqua) / len(aqua)),
                ]
                for name, correct, found in rules
            ],
        )
    )
    print(
        f"\nthe two rules read different letters on {sum(p['extracted'] != p['extracted_first_capital'] for p in aqua)} of {len(aqua)}"
    )


def split_table(rows: list[dict[str, Any]], predictions: list[dict[str, Any]], source: str) -> None:
    print(f'\n4. Splitting on "{RESPONSE}", the {len(rows)} greedy test outputs of {source}\n')
    outputs = [p["output"] for p in predictions]
    ways = {
        "whole generated text (here)": lambda text: text,
        "split [1] (LLM-Adapters)": lambda text: text.split(RESPONSE)[0].strip(),
        "split [-1] (DoRA)": lambda text: text.split(RESPONSE)[-1].strip(),
    }
    changed = {
        name: sum(
            judge(row, cut(text))["extracted"] != judge(row, text)["extracted"] for row, text in zip(rows, outputs)
        )
        for name, cut in ways.items()
    }
    print(
        table(
            ["text scored", "accuracy", "answer differs from whole text"],
            [
                [name, percent(accuracy(rows, [cut(text) for text in outputs])), changed[name]]
                for name, cut in ways.items()
            ],
        )
    )
    print(f'\n{sum(RESPONSE in text for text in outputs)} of {len(outputs)} outputs contain "{RESPONSE}"')


if __name__ == "__main__":
    main()
