"""The label prior of an instruction task's training mix: what knowing each set's answer frequencies alone is worth.

A model that has learned the answer format and how often each answer occurs in each training set, and nothing about
the questions, pays the entropy of those frequencies on every example (the prompt names the set). The template words
around the answer cost it nothing, so spread over the supervised tokens (the answer sentence and EOS) this is its
training loss per supervised token. A run whose training loss ends near this value has learned the prior, not the
task.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.labels import IGNORED


@dataclass(frozen=True)
class LabelPrior:
    """Answer counts per training set and the supervised tokens of all rows."""

    counts: dict[str, Counter[str]]
    supervised_tokens: int

    @property
    def rows(self) -> int:
        return sum(sum(answers.values()) for answers in self.counts.values())

    def entropy(self, subtask: str) -> float:
        """Entropy in nats of the set's answer frequencies."""
        answers = self.counts[subtask]
        total = sum(answers.values())
        return -sum(n / total * math.log(n / total) for n in answers.values())

    @property
    def nats_per_example(self) -> float:
        """The entropies averaged over rows: the prior's loss per example."""
        return sum(sum(answers.values()) * self.entropy(name) for name, answers in self.counts.items()) / self.rows

    @property
    def loss_per_token(self) -> float:
        """The prior's training loss per supervised token."""
        return self.nats_per_example * self.rows / self.supervised_tokens


def label_prior(rows: list[dict[str, Any]], encode: Callable[[dict[str, Any]], dict[str, Any]]) -> LabelPrior:
    """The label prior of training `rows` (each with `subtask` and `answer`), counting the supervised tokens of each
    row as `encode` (a task's training encoding) labels them."""
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        counts.setdefault(row["subtask"], Counter())[row["answer"]] += 1
    supervised = sum(sum(label != IGNORED for label in encode(row)["labels"]) for row in rows)
    return LabelPrior(counts, supervised)
