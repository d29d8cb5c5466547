"""Statistics for reports (scipy.stats): seed aggregates with t-intervals and a paired permutation test on the same
test examples.

Intervals: a cell's 95 % CI is the Student-t interval of its mean over seeds. Seeds are the unit of replication (data
order, initialisation, calibration draws); with 2-3 seeds the interval is wide, and that width is the honest
uncertainty of a cell mean. A bootstrap over seeds cannot resample 2-3 values meaningfully, and a bootstrap over test
examples would leave the seed-to-seed spread out.

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
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
RESAMPLES = 10_000


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for one value) and count."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)


def t_interval(mean: float, std: float, n: int, level: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student-t confidence interval of a mean over n seeds (None for one seed)."""
    if n < 2:
        return None
    if std == 0:
        return mean, mean
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=std / math.sqrt(n))
    return float(low), float(high)


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take, in points: correlations and MCC span [-100, 100], the rest [0, 100]."""
    signed = any(name in metric for name in ("mcc", "pearson", "spearman"))
    return (-100.0, 100.0) if signed else (0.0, 100.0)


def aggregate(values: Sequence[float], bounds: tuple[float, float] = (-math.inf, math.inf)) -> dict[str, Any]:
    """Mean, std, n and 95 % t-interval over seeds, clipped to `bounds` (the metric's range: with two seeds the
    interval easily spills past it); `failed` (and no numbers) when a seed's value is not finite."""
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)):
        return {
            "mean": math.nan,
            "std": math.nan,
            "n": len(values),
            "ci_low": math.nan,
            "ci_high": math.nan,
            "failed": True,
        }
    mean, std, n = mean_std(values)
    low, high = t_interval(mean, std, n) or (math.nan, math.nan)
    return {
        "mean": mean,
        "std": std,
        "n": n,
        "ci_low": max(low, bounds[0]),
        "ci_high": min(high, bounds[1]),
        "failed": False,
    }


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


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(a - b, axis=axis)


def paired_permutation_p(a: dict[Any, float], b: dict[Any, float], resamples: int = RESAMPLES, seed: int = 0) -> float:
    """Two-sided p-value that `a` and `b` have the same mean score on their shared examples (scipy's paired
    permutation test: exact over every swap when 2^n <= `resamples`, else `resamples` random swaps)."""
    shared = sorted(set(a) & set(b), key=str)
    if not shared:
        raise ValueError("the two cells share no scored example")
    first, second = np.array([a[i] for i in shared]), np.array([b[i] for i in shared])
    result = stats.permutation_test(
        (first, second),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=resamples,
        alternative="two-sided",
        rng=seed,
    )
    return float(result.pvalue)
