"""GLUE tasks on encoders: declared as data (files, text fields, labels, metrics), scored on the public
validation set as the papers do.

Files live under `glue/<TASK>/` in the data root (`train.jsonl`, `validation.jsonl`; MNLI has
`validation_matched.jsonl` and `validation_mismatched.jsonl`), one JSON object per line in the HF `glue` schema.
A split missing from the data root is loaded from the hub (`nyu-mll/glue`) when a network exists; offline that is
an error naming the file to provide. STS-B is a regression (one output, `num_labels=1`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from core.errors import BenchError
from tasks import metrics
from tasks.base import EvalResult, Task, across_ranks, progress_bar
from tasks.data_source import DataSource
from tasks.phrases import hold_out_sentences

if TYPE_CHECKING:
    from torch import nn

Metric = Callable[[list[Any], list[Any]], float]
HUB_DATASET = "nyu-mll/glue"


@dataclass(kw_only=True)
class GlueTask(Task):
    """A GLUE task: one or two text fields, a label column, its official metric(s) and the splits it is scored on."""

    name: str
    directory: str
    hub_config: str
    text_fields: tuple[str, ...]
    num_labels: int
    metrics: dict[str, Metric]
    test_splits: tuple[str, ...] = ("validation",)
    # A regression task's label range: training targets are mapped linearly onto [-1, 1] and predictions back, so a
    # new head starting near 0 is near the targets' centre instead of spending its first hundreds of steps moving
    # its output to the label mean (STS-B's 0-5). Pearson and Spearman do not change under the map.
    label_range: tuple[float, float] | None = None
    # Training rows are the phrases of the test set's kind of sentences (SST-2): hold out whole sentences and drop
    # their phrases from training (tasks/phrases.py), instead of a random slice of phrases.
    phrase_level: bool = False
    family: str = "glue"
    model_kind: str = "sequence-classification"

    @property
    def primary_metric(self) -> str:
        return self._metric_name(next(iter(self.metrics)), self._subtask(self.test_splits[0]))

    def _subtask(self, split: str) -> str | None:
        """`matched` for MNLI's `validation_matched`; None for a task scored on one split."""
        return split.removeprefix("validation_") if len(self.test_splits) > 1 else None

    def _to_target(self, label: float) -> float:
        if self.label_range is None:
            return label
        low, high = self.label_range
        return (2 * label - low - high) / (high - low)

    def _from_target(self, value: float) -> float:
        if self.label_range is None:
            return value
        low, high = self.label_range
        return (value * (high - low) + low + high) / 2

    def split_train(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if self.phrase_level:
            return hold_out_sentences(rows, self.validation_size, self.text_fields[0])
        return super().split_train(rows)

    def describe(self, source: DataSource) -> dict[str, Any]:
        described = {}
        if self.label_range is not None:
            described["target_scaling"] = (
                f"labels {list(self.label_range)} mapped linearly onto [-1, 1] for training, predictions mapped back"
            )
        if self.phrase_level:
            rows = self.read_train(source)
            train, validation = self.split_train(rows)
            test = self.read_test(source)
            described["validation_split"] = {
                "rule": "whole sentences held out, the training phrases inside them dropped (tasks/phrases.py)",
                "dropped_from_training": len(rows) - len(train) - len(validation),
                **{
                    f"{name}_mean_words": round(
                        sum(len(row[self.text_fields[0]].split()) for row in part) / len(part), 2
                    )
                    for name, part in (("validation", validation), ("test", test))
                },
                **{
                    f"{name}_label_1_share": round(sum(row["label"] == 1 for row in part) / len(part), 4)
                    for name, part in (("validation", validation), ("test", test))
                },
            }
        return described

    @staticmethod
    def _metric_name(metric: str, subtask: str | None) -> str:
        return f"{metric}_{subtask}" if subtask else metric

    def _read(self, source: DataSource, split: str) -> list[dict[str, Any]]:
        relative = f"{self.directory}/{split}.jsonl"
        rows = (
            source.read_records(relative)
            if source.has(relative)
            else source.read_hub(relative, HUB_DATASET, self.hub_config, split)
        )
        where = source.root / relative if source.has(relative) else f"hub:{HUB_DATASET}/{self.hub_config}/{split}"
        for index, row in enumerate(rows, start=1):
            missing = [field for field in (*self.text_fields, "label") if field not in row]
            if missing:
                raise BenchError(
                    f"{where}, row {index}: missing field(s) {missing}",
                    f"each row needs {[*self.text_fields, 'label']}",
                )
            label = row["label"]
            valid = (
                isinstance(label, (int, float))
                and not isinstance(label, bool)
                and (self.num_labels == 1 or label in range(self.num_labels))
            )
            if not valid:
                raise BenchError(
                    f"{where}, row {index}: unknown label {label!r}", f"labels of {self.name} are {self._label_text()}"
                )
        return rows

    def _label_text(self) -> str:
        return "floats" if self.num_labels == 1 else f"integers 0..{self.num_labels - 1}"

    def read_train(self, source: DataSource) -> list[dict[str, Any]]:
        return self._read(source, "train")

    def read_test(self, source: DataSource) -> list[dict[str, Any]]:
        rows = []
        for split in self.test_splits:
            subtask = self._subtask(split)
            rows.extend({**row, "subtask": subtask} if subtask else row for row in self._read(source, split))
        return rows

    def leakage_text(self, row: dict[str, Any]) -> str:
        return " ".join(str(row[field]) for field in self.text_fields)

    def encode(self, example: dict[str, Any], tokenizer: Any, max_length: int) -> dict[str, Any]:
        texts = [example[field] for field in self.text_fields]
        ids = tokenizer(*texts, truncation=True, max_length=max_length)["input_ids"]
        label = self._to_target(float(example["label"])) if self.num_labels == 1 else int(example["label"])
        return {"input_ids": ids, "labels": label}

    def evaluate(
        self,
        model: nn.Module,
        tokenizer: Any,
        examples: list[dict[str, Any]],
        batch_size: int,
        max_length: int,
        progress: bool = False,
    ) -> EvalResult:
        was_training = model.training
        model.eval()
        features = [self.encode(example, tokenizer, max_length) for example in examples]
        order = sorted(
            range(len(features)), key=lambda index: len(features[index]["input_ids"])
        )  # batches of similar length pad less
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        predictions: list[Any] = [None] * len(features)
        scored = across_ranks(batches, partial(self._predict, model, tokenizer, features, progress))
        for indices, values in zip(batches, scored):
            for index, prediction in zip(indices, values):
                predictions[index] = prediction
        model.train(was_training)
        scores = {}
        for split in self.test_splits:
            subtask = self._subtask(split)
            pairs = [(pred, ex["label"]) for pred, ex in zip(predictions, examples) if ex.get("subtask") == subtask]
            if pairs:
                preds, refs = zip(*pairs)
                scores.update(
                    {
                        self._metric_name(name, subtask): metric(list(preds), list(refs))
                        for name, metric in self.metrics.items()
                    }
                )
        records = [
            {
                "index": i,
                **({"subtask": ex["subtask"]} if "subtask" in ex else {}),
                "label": ex["label"],
                "prediction": pred,
            }
            for i, (ex, pred) in enumerate(zip(examples, predictions))
        ]
        return EvalResult(metrics=scores, predictions=records)

    def _predict(
        self, model: nn.Module, tokenizer: Any, features: list[dict[str, Any]], progress: bool, batches: list[list[int]]
    ) -> list[list[Any]]:
        """The predictions of each batch of feature indices: a score (regression) or a class per example."""
        import torch

        device = next(model.parameters()).device
        predictions = []
        with torch.no_grad(), progress_bar(sum(map(len, batches)), f"evaluate {self.name}", progress) as bar:
            for indices in batches:
                batch = self.collate([features[index] for index in indices], tokenizer)
                logits = model(
                    input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
                ).logits.float()
                predictions.append(
                    [self._from_target(value) for value in logits[:, 0].tolist()]
                    if self.num_labels == 1
                    else logits.argmax(-1).tolist()
                )
                bar.update(len(indices))
        return predictions


ACCURACY = {"accuracy": metrics.accuracy}
F1_ACCURACY = {"f1": metrics.f1, "accuracy": metrics.accuracy}
PAIR = ("sentence1", "sentence2")

COLA = GlueTask(
    name="glue/cola",
    directory="glue/CoLA",
    hub_config="cola",
    text_fields=("sentence",),
    num_labels=2,
    metrics={"mcc": metrics.matthews_corrcoef},
)
SST2 = GlueTask(
    name="glue/sst2",
    directory="glue/SST-2",
    hub_config="sst2",
    text_fields=("sentence",),
    num_labels=2,
    metrics=ACCURACY,
    phrase_level=True,
)
MRPC = GlueTask(
    name="glue/mrpc", directory="glue/MRPC", hub_config="mrpc", text_fields=PAIR, num_labels=2, metrics=F1_ACCURACY
)
RTE = GlueTask(
    name="glue/rte", directory="glue/RTE", hub_config="rte", text_fields=PAIR, num_labels=2, metrics=ACCURACY
)
STSB = GlueTask(
    name="glue/stsb",
    directory="glue/STS-B",
    hub_config="stsb",
    text_fields=PAIR,
    num_labels=1,
    metrics={"pearson": metrics.pearson, "spearman": metrics.spearman},
    label_range=(0.0, 5.0),
)
QNLI = GlueTask(
    name="glue/qnli",
    directory="glue/QNLI",
    hub_config="qnli",
    text_fields=("question", "sentence"),
    num_labels=2,
    metrics=ACCURACY,
)
QQP = GlueTask(
    name="glue/qqp",
    directory="glue/QQP",
    hub_config="qqp",
    text_fields=("question1", "question2"),
    num_labels=2,
    metrics=F1_ACCURACY,
)
MNLI = GlueTask(
    name="glue/mnli",
    directory="glue/MNLI",
    hub_config="mnli",
    text_fields=("premise", "hypothesis"),
    num_labels=3,
    metrics=ACCURACY,
    test_splits=("validation_matched", "validation_mismatched"),
)
