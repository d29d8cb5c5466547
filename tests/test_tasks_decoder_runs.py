"""Each decoder family end to end on the real SmolLM2: load the real mix and test sets, a short LoRA fine-tune, every
evaluation protocol, and the record (paper-style average, mix name, template hash, leakage, predictions)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from transformers import AutoTokenizer

from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.models import model_source
from bench.run.plan import plan
from core.errors import BenchError
from tasks.prompts import TEMPLATE_HASH

MIX_PARTS = {
    "commonsense/all": ("boolq-train", "ARC-Easy-train", "ARC-Challenge-train", "openbookqa-train"),
    "arithmetic/all": ("gsm8k-train", "mawps-train"),
}
SHORT = {
    "method": "lora",
    "budget": "0.2%",
    "model": "smollm2-135m",
    "max_steps": 2,
    "batch_size": 2,
    "max_length": 96,
    "train_examples": 4,
    "validation_examples": 1,
    "test_examples": 1,
    "eval_batch_size": 8,
}


def run_short(task: str, out, max_new_tokens: int) -> tuple[dict, list[dict]]:
    run = plan(RunConfig(task=task, **SHORT))
    run.task = dataclasses.replace(run.task, max_new_tokens=max_new_tokens)  # few new tokens: CPU generation is slow
    record = execute(run, out, progress=False)
    predictions = [
        json.loads(line) for line in (out / f"{record['run_key']}.predictions.jsonl").read_text().splitlines()
    ]
    return record, predictions


@pytest.mark.parametrize(
    ("task", "benchmarks", "mix"),
    [("commonsense/all", 8, "offline-commonsense-boolq-arc-obqa"), ("arithmetic/all", 7, "offline-math-gsm8k-mawps")],
)
def test_family_trains_on_the_mix_and_reports_each_benchmark(task, benchmarks, mix, tmp_path):
    record, predictions = run_short(task, tmp_path, max_new_tokens=6)
    assert record["task"]["train_mix"]["name"] == mix and record["task"]["train_mix"]["paper_set"] is False
    assert record["task"]["template_sha256"] == TEMPLATE_HASH and record["task"]["prompt_masked"] is True
    test = record["metrics"]["test"]
    assert (
        "average" in record["metrics"]["validation"] and "average" in test
    )  # the primary metric, used to pick learning rates
    names = record["task"]["benchmarks"]
    assert len(names) == benchmarks
    accuracies = [test[f"{name}/accuracy"] for name in names]
    assert test["average"] == pytest.approx(sum(accuracies) / len(accuracies))
    assert all(0.0 <= test[f"{name}/format_failure_rate"] <= 1.0 for name in names)
    with_choices = [name for name in names if f"{name}/loglik_accuracy" in test]
    assert with_choices == (
        names if task.startswith("commonsense") else ["aqua"]
    )  # open numeric answers have no choice set
    assert "aqua/accuracy_first_capital" in test or task.startswith("commonsense")
    with_standard = [name for name in names if f"{name}/loglik_accuracy_standard" in test]
    assert with_standard == ([name for name in names if name != "boolq"] if task.startswith("commonsense") else [])
    assert ("average_loglik_standard" in test) == bool(with_standard)  # lm-eval's formulations: no passage for BoolQ
    test_predictions = [p for p in predictions if p["split"] == "test"]
    assert [p["subtask"] for p in test_predictions] == names
    for p in test_predictions:
        assert {"output", "extracted", "correct", "answer"} <= set(p)
        assert ("loglik_choice" in p) == (p["subtask"] in with_choices)
        assert ("standard_choice" in p) == (p["subtask"] in with_standard)
    pairs = record["leakage"]["pairs"]
    assert set(pairs) == {f"{part} -> {name}" for part in MIX_PARTS[task] for name in names}


def test_prompt_masking_is_a_run_setting_in_the_key_and_the_training_labels():
    masked = plan(RunConfig(task="commonsense/boolq", **SHORT))
    unmasked = plan(RunConfig(task="commonsense/boolq", mask_prompt=False, **SHORT))
    assert masked.key != unmasked.key  # two runs that differ only in masking never share a record
    assert unmasked.config.to_dict()["mask_prompt"] is False
    assert unmasked.task.describe(unmasked.source)["prompt_masked"] is False
    tokenizer = AutoTokenizer.from_pretrained(model_source("smollm2-135m"))
    row = unmasked.splits["train"][0]
    trained_on_prompt = unmasked.task.encode(row, tokenizer, max_length=256)
    answer_only = masked.task.encode(row, tokenizer, max_length=256)
    assert trained_on_prompt["input_ids"] == answer_only["input_ids"]
    assert trained_on_prompt["labels"] == trained_on_prompt["input_ids"]
    assert answer_only["labels"][0] == -100 and answer_only["labels"][-1] == answer_only["input_ids"][-1]
    with pytest.raises(BenchError, match="no instruction prompt"):
        plan(RunConfig(method="lora", budget="1%", task="glue/sst2", model="minilm-l6", mask_prompt=False))
