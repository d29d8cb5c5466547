"""Statistics for reports: seed aggregates and a paired permutation test on the same test examples.

Ties: two cells are compared on the examples both were scored on. Each example's score is averaged over the
cell's seeds (1/0 correct for classification; minus the absolute error for regression outputs such as STS-B), and a
two-sided paired permutation test (random sign flips of the per-example differences) gives the p-value of
"same mean score". A cell is marked tied with the best when p >= ALPHA. For MCC/F1/correlation-scored tasks
the test runs on per-example correctness (or error), which approximates the primary metric.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ALPHA = 0.05
RESAMPLES = 10_000


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std, n


def example_score(row: dict[str, Any]) -> float:
    """One example's score: `correct` if the task wrote it, else -|error| for a real-valued prediction (regression),
    else 1/0 exact match of the predicted class."""
    if "correct" in row:
        return float(row["correct"])
    label, prediction = row["label"], row["prediction"]
    if isinstance(prediction, float):
        return -abs(prediction - float(label))
    return float(prediction == label)


def read_example_scores(predictions_file: Path, split: str = "test") -> dict[Any, float]:
    """Per-example scores of one run on `split`, by example index."""
    scores = {}
    with open(predictions_file, encoding="utf-8") as stream:
        for line in stream:
            row = json.loads(line)
            if row.get("split") == split:
                scores[row["index"]] = example_score(row)
    return scores


def seed_averaged(runs: Iterable[dict[Any, float]]) -> dict[Any, float]:
    """Average per-example scores over seeds, on the examples every seed has."""
    runs = list(runs)
    common = set.intersection(*(set(run) for run in runs))
    return {index: sum(run[index] for run in runs) / len(runs) for index in common}


def paired_permutation_p(a: dict[Any, float], b: dict[Any, float], resamples: int = RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value that `a` and `b` have the same mean score on their shared examples."""
    shared = sorted(set(a) & set(b), key=str)
    if not shared:
        raise ValueError("the two cells share no scored example")
    differences = np.array([a[i] - b[i] for i in shared])
    observed = abs(differences.mean())
    if not np.any(differences):
        return 1.0
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(resamples, len(differences)))
    extreme = np.count_nonzero(np.abs(signs @ differences) / len(differences) >= observed - 1e-12)
    return (extreme + 1) / (resamples + 1)
