"""The task boundary: data splits, encoding into model inputs, and evaluation with the official metric.

A task never trains anything. The training loop computes the model's loss (`methods.task_loss`) on batches built by
`encode` + `collate`, so every batch carries `labels`: a class or target per example, or a token id per position
(-100 where a token is not scored) for a language model.

Splits: `train` and `validation` come from the training file (validation is a fixed held-out slice of it, the same
for every seed, used for learning-rate selection); `test` is the split the papers report (for GLUE, the public
validation set).

Rows of a task made of several parts (a group such as `commonsense/all`, or MNLI's matched/mismatched sets) carry
a `subtask` key; a `limit` then keeps the first `limit` rows of each part.
"""

from __future__ import annotations

import random
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from tqdm import tqdm

from core.labels import IGNORED
from tasks.data_source import DataSource

if TYPE_CHECKING:
    import torch
    from torch import nn

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
HOLDOUT_SEED = 1234
Item = TypeVar("Item")
Scored = TypeVar("Scored")


@dataclass
class EvalResult:
    """Metrics on one split, with one prediction record per example."""

    metrics: dict[str, float]
    predictions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_examples(self) -> int:
        return len(self.predictions)


def progress_bar(total: int, description: str, enabled: bool, unit: str = "example") -> tqdm:
    """The bar of an evaluation or generation loop, on stderr, left at its final count; silent unless `enabled`."""
    return tqdm(total=total, desc=description, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def across_ranks(items: list[Item], score: Callable[[list[Item]], list[Scored]]) -> list[Scored]:
    """`score(items)`, split across the processes of a distributed run and gathered back in order on every process.

    Of N processes, rank r scores items r, r + N, r + 2N, ... (strided, so long and short items spread evenly). `score`
    must map each item on its own (a batch to its predictions, a prompt to its answer), so the result equals one
    process scoring every item. Without an initialized process group it is `score(items)`.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return score(items)
    rank, world = dist.get_rank(), dist.get_world_size()
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, score(items[rank::world]))
    return [parts[index % world][index // world] for index in range(len(items))]


def hold_out(rows: list[dict[str, Any]], size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split `rows` into (train, validation) with a fixed permutation, so every seed sees the same split."""
    order = list(range(len(rows)))
    random.Random(HOLDOUT_SEED).shuffle(order)
    size = min(size, len(rows) // 5)
    validation = sorted(order[:size])
    held = set(validation)
    return [row for index, row in enumerate(rows) if index not in held], [rows[index] for index in validation]


def limit_per_subtask(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The first `limit` rows of each `subtask` (of all rows when there are no subtasks), in the original order."""
    seen: dict[Any, int] = {}
    kept = []
    for row in rows:
        part = row.get("subtask")
        if seen.get(part, 0) < limit:
            seen[part] = seen.get(part, 0) + 1
            kept.append(row)
    return kept


class Task(ABC):
    """One benchmark task: what the model is asked, how it is encoded and how it is scored."""

    name: str
    family: str
    model_kind: Literal["sequence-classification", "causal-lm"]
    primary_metric: str
    num_labels: int = 0
    validation_size: int = 500

    @abstractmethod
    def read_train(self, source: DataSource) -> list[dict[str, Any]]:
        """Every training example (the held-out validation slice is taken from these)."""

    @abstractmethod
    def read_test(self, source: DataSource) -> list[dict[str, Any]]:
        """The examples the task is scored on."""

    @abstractmethod
    def encode(self, example: dict[str, Any], tokenizer: Any, max_length: int) -> dict[str, Any]:
        """Token ids and label(s) of one example."""

    @abstractmethod
    def evaluate(
        self,
        model: nn.Module,
        tokenizer: Any,
        examples: list[dict[str, Any]],
        batch_size: int,
        max_length: int,
        progress: bool = False,
    ) -> EvalResult:
        """Score `model` on `examples` with the task's official metric(s); `progress` shows a bar on stderr."""

    def load(self, split: Split, source: DataSource, limit: int | None = None) -> list[dict[str, Any]]:
        """The examples of `split`, the first `limit` of them if given."""
        if split == "test":
            rows = self.read_test(source)
        else:
            train, validation = self.split_train(self.read_train(source))
            rows = train if split == "train" else validation
        return limit_per_subtask(rows, limit) if limit else rows

    def split_train(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(train, validation) from the training file's rows: by default a fixed random hold-out (`hold_out`)."""
        return hold_out(rows, self.validation_size)

    def leakage_text(self, row: dict[str, Any]) -> str:
        """The text of `row` that the leakage guard compares between training and test sets."""
        return " ".join(value for key, value in row.items() if isinstance(value, str) and key != "subtask")

    def describe(self, source: DataSource) -> dict[str, Any]:
        """The task's protocol choices (and the data it chose from `source`), stored in the result record."""
        return {}

    def collate(self, features: list[dict[str, Any]], tokenizer: Any) -> dict[str, torch.Tensor]:
        """Right-pad `input_ids`/`attention_mask` (and list-valued `labels` with -100) into a batch."""
        import torch

        width = max(len(feature["input_ids"]) for feature in features)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        def pad(values: list[int], fill: int) -> list[int]:
            return list(values) + [fill] * (width - len(values))

        batch = {
            "input_ids": torch.tensor([pad(f["input_ids"], pad_id) for f in features]),
            "attention_mask": torch.tensor([pad([1] * len(f["input_ids"]), 0) for f in features]),
        }
        labels = [feature["labels"] for feature in features]
        if isinstance(labels[0], list):
            batch["labels"] = torch.tensor([pad(label, IGNORED) for label in labels])
        else:
            batch["labels"] = torch.tensor(labels, dtype=torch.float32 if self.num_labels == 1 else torch.long)
        return batch
