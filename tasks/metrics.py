"""Official metrics as small pure functions over predictions and references."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    if len(predictions) != len(references) or not references:
        raise ValueError("accuracy needs equally long, non-empty predictions and references")
    return sum(int(p == r) for p, r in zip(predictions, references)) / len(references)
