"""GLUE tasks on encoders: declared as data (files, text fields, labels, metrics), scored on the public
validation set as the papers do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bench.errors import BenchError
from tasks import metrics
from tasks.base import EvalResult, Task
from tasks.data_source import DataSource

Metric = Callable[[list[Any], list[Any]], float]


@dataclass(kw_only=True)
class GlueTask(Task):
    """A GLUE task: one or two text fields, a label column, and its official metric(s)."""

    name: str
    directory: str
    text_fields: tuple[str, ...]
    num_labels: int
    metrics: dict[str, Metric]
    train_file: str = "train.jsonl"
    test_file: str = "validation.jsonl"
    family: str = "glue"
    model_kind: str = "sequence-classification"

    @property
    def primary_metric(self) -> str:
        return next(iter(self.metrics))

    def _read(self, source: DataSource, file: str) -> list[dict[str, Any]]:
        relative = f"{self.directory}/{file}"
        rows = source.read_records(relative)
        for index, row in enumerate(rows, start=1):
            missing = [field for field in (*self.text_fields, "label") if field not in row]
            if missing:
                raise BenchError(f"{source.root / relative}, row {index}: missing field(s) {missing}", f"each row needs {[*self.text_fields, 'label']}")
            label = row["label"]
            valid = isinstance(label, (int, float)) and (self.num_labels == 1 or label in range(self.num_labels))
            if not valid:
                raise BenchError(f"{source.root / relative}, row {index}: unknown label {label!r}", f"labels of {self.name} are {self._label_text()}")
        return rows

    def _label_text(self) -> str:
        return "floats" if self.num_labels == 1 else f"integers 0..{self.num_labels - 1}"

    def read_train(self, source: DataSource) -> list[dict[str, Any]]:
        return self._read(source, self.train_file)

    def read_test(self, source: DataSource) -> list[dict[str, Any]]:
        return self._read(source, self.test_file)

    def encode(self, example: dict[str, Any], tokenizer: Any, max_length: int) -> dict[str, Any]:
        texts = [example[field] for field in self.text_fields]
        ids = tokenizer(*texts, truncation=True, max_length=max_length)["input_ids"]
        label = float(example["label"]) if self.num_labels == 1 else int(example["label"])
        return {"input_ids": ids, "labels": label}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, tokenizer: Any, examples: list[dict[str, Any]], batch_size: int, max_length: int) -> EvalResult:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        predictions: list[Any] = []
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            batch = self.collate([self.encode(example, tokenizer, max_length) for example in chunk], tokenizer)
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits.float()
            predictions.extend(logits[:, 0].tolist() if self.num_labels == 1 else logits.argmax(-1).tolist())
        model.train(was_training)
        references = [example["label"] for example in examples]
        scores = {metric_name: metric(predictions, references) for metric_name, metric in self.metrics.items()}
        records = [{"index": i, "label": ref, "prediction": pred} for i, (ref, pred) in enumerate(zip(references, predictions))]
        return EvalResult(metrics=scores, predictions=records)


SST2 = GlueTask(name="glue/sst2", directory="glue/SST-2", text_fields=("sentence",), num_labels=2, metrics={"accuracy": metrics.accuracy})
