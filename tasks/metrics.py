"""Official GLUE metrics over predictions and references: scikit-learn for the label metrics, scipy for correlations.

A correlation over predictions that are not all finite (a diverged regression head) is nan, a failed metric: reports
show it as failed, never as a number. The libraries are imported when a metric is computed, so declaring a task
that names a metric costs nothing.

`LABELS` names every metric a task records (these and the decoder tasks', tasks/instruction.py) in report tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# A table column's label by metric name; a metric `<name>_<rest>` takes the label of its longest listed prefix plus
# the rest (`accuracy_matched` -> "Acc matched", bench.report.tables.metric_label).
LABELS = {
    "accuracy": "Acc",
    "f1": "F1",
    "mcc": "MCC",
    "pearson": "Pearson",
    "spearman": "Spearman",
    "loglik_accuracy": "LL acc",
    "loglik_accuracy_norm": "LL acc norm",
    "format_failure_rate": "Format fail %",
    "accuracy_first_capital": "Acc (first capital)",
    "average": "Gen acc avg",
    "average_loglik": "LL acc avg",
    "average_format_failure_rate": "Format fail % avg",
}
DECODER_LABELS = {"accuracy": "Gen acc"}  # a decoder task's accuracy is that of its generated answers


def _check(predictions: Sequence, references: Sequence, name: str) -> None:
    if len(predictions) != len(references) or not references:
        raise ValueError(f"{name} needs equally long, non-empty predictions and references")


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> float:
    _check(predictions, references, "accuracy")
    from sklearn import metrics

    return float(metrics.accuracy_score(references, predictions))


def f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Binary F1 of the positive class 1 (GLUE MRPC/QQP); 0 when there are no true or predicted positives."""
    _check(predictions, references, "f1")
    from sklearn import metrics

    return float(metrics.f1_score(references, predictions, pos_label=1, average="binary", zero_division=0.0))


def matthews_corrcoef(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation of binary labels (GLUE CoLA); 0 when a marginal is constant."""
    _check(predictions, references, "matthews_corrcoef")
    from sklearn import metrics

    return float(metrics.matthews_corrcoef(references, predictions))


def _correlation(function: str, predictions: Sequence[float], references: Sequence[float], name: str) -> float:
    """`scipy.stats.<function>` of predictions and references, or nan (see the module docstring)."""
    _check(predictions, references, name)
    import numpy as np
    from scipy import stats

    predictions = np.asarray(predictions, dtype=float)
    if (
        not np.all(np.isfinite(predictions))
        or np.ptp(predictions) == 0
        or np.ptp(np.asarray(references, dtype=float)) == 0
    ):
        return math.nan
    return float(getattr(stats, function)(predictions, references).statistic)


def pearson(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Pearson correlation (GLUE STS-B); nan when a prediction is not finite or either side is constant."""
    return _correlation("pearsonr", predictions, references, "pearson")


def spearman(predictions: Sequence[float], references: Sequence[float]) -> float:
    """Spearman rank correlation, ties at their average rank (GLUE STS-B); nan like `pearson`."""
    return _correlation("spearmanr", predictions, references, "spearman")
