"""GLUE: metrics against hand counts and textbook formulas (non-finite predictions give a failed correlation), every
offline task loads real data, a short real fine-tune of the regression task, and the hub-only tasks failing offline
with an error naming the file to provide."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest

from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.plan import plan
from core.errors import BenchError
from tasks import get_task, metrics
from tasks.data_source import DataSource

OFFLINE_GLUE = ("glue/cola", "glue/sst2", "glue/mrpc", "glue/rte", "glue/stsb")


def noisy(labels: list, rng: random.Random, flip: float) -> list:
    """Predictions that agree with `labels` except for a random `flip` share (real label distribution, real errors)."""
    return [(1 - label) if rng.random() < flip else label for label in labels]


def naive_confusion(predictions: list[int], labels: list[int]) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) counted one example at a time, label 1 positive."""
    tp = sum(p == 1 and r == 1 for p, r in zip(predictions, labels))
    fp = sum(p == 1 and r != 1 for p, r in zip(predictions, labels))
    fn = sum(p != 1 and r == 1 for p, r in zip(predictions, labels))
    return tp, fp, fn, len(labels) - tp - fp - fn


def naive_pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / math.sqrt(
        sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y)
    )


def naive_ranks(values: list[float]) -> list[float]:
    """1-based ranks, tied values at the mean of the positions they occupy."""
    ordered = sorted(values)
    return [statistics.mean(i + 1 for i, v in enumerate(ordered) if v == value) for value in values]


def test_label_metrics_on_a_hand_counted_case():
    # tp=3, fp=1, fn=2, tn=4: F1 = 2·3/(2·3+1+2) = 2/3; MCC = (3·4 − 1·2)/sqrt(4·5·5·6) = 10/sqrt(600)
    predictions = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    labels = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    assert metrics.accuracy(predictions, labels) == pytest.approx(0.7, abs=1e-15)
    assert metrics.f1(predictions, labels) == pytest.approx(2 / 3, abs=1e-15)
    assert metrics.matthews_corrcoef(predictions, labels) == pytest.approx(10 / math.sqrt(600), abs=1e-15)
    assert metrics.f1([0] * 10, labels) == 0.0 and metrics.matthews_corrcoef([1] * 10, labels) == 0.0


@pytest.mark.parametrize("task_name", ["glue/cola", "glue/mrpc", "glue/rte"])
def test_label_metrics_match_naive_counts_on_real_labels(task_name):
    labels = [row["label"] for row in get_task(task_name).load("test", DataSource())]
    rng = random.Random(0)
    for flip in (0.1, 0.35, 0.5):
        predictions = noisy(labels, rng, flip)
        tp, fp, fn, tn = naive_confusion(predictions, labels)
        assert metrics.accuracy(predictions, labels) == pytest.approx((tp + tn) / len(labels), abs=1e-12)
        assert metrics.f1(predictions, labels) == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-12)
        mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        assert metrics.matthews_corrcoef(predictions, labels) == pytest.approx(mcc, abs=1e-12)


def test_correlations_match_the_textbook_formulas_on_real_labels():
    labels = [row["label"] for row in get_task("glue/stsb").load("test", DataSource())]
    rng = random.Random(1)
    predictions = [
        round(label + rng.gauss(0, 1.2), 1) for label in labels
    ]  # rounding makes ties, which ranks must average
    assert metrics.pearson(predictions, labels) == pytest.approx(naive_pearson(predictions, labels), abs=1e-12)
    assert metrics.spearman(predictions, labels) == pytest.approx(
        naive_pearson(naive_ranks(predictions), naive_ranks(labels)), abs=1e-12
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_correlations_of_non_finite_predictions_are_failed_not_numbers(bad):
    labels = [row["label"] for row in get_task("glue/stsb").load("test", DataSource())]
    predictions = [label + 0.1 * (i % 7) for i, label in enumerate(labels)]
    predictions[5] = bad
    assert math.isnan(metrics.pearson(predictions, labels)) and math.isnan(metrics.spearman(predictions, labels))
    assert math.isnan(metrics.pearson([2.5] * len(labels), labels))  # a constant head: no correlation to report


@pytest.mark.parametrize("task_name", OFFLINE_GLUE)
def test_offline_glue_tasks_load_real_rows(task_name):
    task, source = get_task(task_name), DataSource()
    train, test = task.load("train", source), task.load("test", source)
    assert len(train) >= 400 and len(test) >= 277
    assert all(field in train[0] for field in task.text_fields)
    labels = {row["label"] for row in test}
    assert labels <= set(range(task.num_labels)) if task.num_labels > 1 else all(0 <= label <= 5 for label in labels)
    assert set(source.files) == {f"{task.directory}/train.jsonl", f"{task.directory}/validation.jsonl"}


@pytest.mark.parametrize("task_name", ["glue/qnli", "glue/qqp", "glue/mnli"])
def test_hub_tasks_fail_offline_naming_the_file(task_name, tmp_path):
    with pytest.raises(BenchError) as error:
        get_task(task_name).load("train", DataSource(tmp_path))
    message = str(error.value)
    assert "train.jsonl is missing" in message and str(tmp_path) in message and "nyu-mll/glue" in message


def test_mnli_scores_matched_and_mismatched(tmp_path):
    """MNLI from a local data dir: both validation sets are read and scored separately."""
    for split, genre in (("train", "fiction"), ("validation_matched", "fiction"), ("validation_mismatched", "letters")):
        (tmp_path / "glue/MNLI").mkdir(parents=True, exist_ok=True)
        rows = [
            {"premise": f"{genre} premise {i}", "hypothesis": f"hypothesis {i}", "label": i % 3, "idx": i}
            for i in range(30)
        ]
        (tmp_path / f"glue/MNLI/{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    task = get_task("glue/mnli")
    test = task.load("test", DataSource(tmp_path), limit=5)
    assert [row["subtask"] for row in test] == ["matched"] * 5 + ["mismatched"] * 5
    assert task.primary_metric == "accuracy_matched"


def test_stsb_regression_run(tmp_path):
    """A real short fine-tune of MiniLM with a one-output regression head, scored with Pearson and Spearman."""
    run = plan(
        RunConfig(
            method="lora",
            budget="0.5%",
            task="glue/stsb",
            model="minilm-l6",
            max_steps=3,
            batch_size=8,
            max_length=64,
            train_examples=48,
            validation_examples=16,
            test_examples=64,
            eval_batch_size=32,
        )
    )
    record = execute(run, tmp_path, progress=False)
    test_metrics = record["metrics"]["test"]
    assert set(test_metrics) == {"pearson", "spearman"}
    assert all(-1.0 <= value <= 1.0 for value in test_metrics.values())
    predictions = [
        json.loads(line) for line in (tmp_path / f"{record['run_key']}.predictions.jsonl").read_text().splitlines()
    ]
    test_predictions = [p for p in predictions if p["split"] == "test"]
    assert len(test_predictions) == 64 and isinstance(test_predictions[0]["prediction"], float)
    assert metrics.pearson(
        [p["prediction"] for p in test_predictions], [p["label"] for p in test_predictions]
    ) == pytest.approx(test_metrics["pearson"])
    assert record["leakage"]["pairs"]["train -> test"]["test_examples"] == 64


def test_stsb_trains_on_targets_in_minus_one_to_one_and_reports_predictions_on_the_label_scale():
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class Tokenizer:
        pad_token_id = 0

        def __call__(self, *texts, truncation, max_length):
            return {"input_ids": [1, 2, 3]}

    class Constant(torch.nn.Module):
        """Outputs 0.2 for every example, which is 3.0 on STS-B's 0-5 scale."""

        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask):
            return SequenceClassifierOutput(logits=torch.full((len(input_ids), 1), 0.2))

    task = get_task("glue/stsb")
    rows = task.load("test", DataSource(), limit=40)
    targets = [task.encode(row, Tokenizer(), 16)["labels"] for row in rows]
    assert targets == pytest.approx([row["label"] / 2.5 - 1 for row in rows])
    assert min(row["label"] for row in rows) < 1 and max(row["label"] for row in rows) > 4  # the ends are covered
    result = task.evaluate(Constant(), Tokenizer(), rows, batch_size=8, max_length=16)
    assert [p["prediction"] for p in result.predictions] == pytest.approx([3.0] * len(rows))
    assert math.isnan(result.metrics["pearson"])  # a constant prediction has no correlation
    assert task.describe(DataSource())["target_scaling"].startswith("labels [0.0, 5.0]")
