"""Official metrics as small pure functions over predictions and references (checked against scikit-learn/scipy)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def _check(predictions: Sequence, references: Sequence, name: str) -> None:
    if len(predictions) != len(references) or not references:
        raise ValueError(f"{name} needs equally long, non-empty predictions and references")


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    _check(predictions, references, "accuracy")
    return sum(int(p == r) for p, r in zip(predictions, references)) / len(references)


def _confusion(predictions: Sequence[int], references: Sequence[int]) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) with label 1 as the positive class."""
    tp = sum(1 for p, r in zip(predictions, references) if p == 1 and r == 1)
    fp = sum(1 for p, r in zip(predictions, references) if p == 1 and r != 1)
    fn = sum(1 for p, r in zip(predictions, references) if p != 1 and r == 1)
    return tp, fp, fn, len(references) - tp - fp - fn


def f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Binary F1 of the positive class 1 (GLUE MRPC/QQP); 0 when there are no true or predicted positives."""
    _check(predictions, references, "f1")
    tp, fp, fn, _ = _confusion(predictions, references)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def matthews_corrcoef(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation of binary labels (GLUE CoLA); 0 when a marginal is constant."""
    _check(predictions, references, "matthews_corrcoef")
    tp, fp, fn, tn = _confusion(predictions, references)
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def pearson(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Pearson correlation (GLUE STS-B); nan when either side is constant."""
    _check(predictions, references, "pearson")
    n = len(references)
    mean_p, mean_r = sum(predictions) / n, sum(references) / n
    dp = [p - mean_p for p in predictions]
    dr = [r - mean_r for r in references]
    denominator = math.sqrt(sum(x * x for x in dp) * sum(y * y for y in dr))
    return sum(x * y for x, y in zip(dp, dr)) / denominator if denominator else math.nan


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson of average ranks (GLUE STS-B)."""
    _check(predictions, references, "spearman")
    return pearson(_ranks(predictions), _ranks(references))
