"""Do the two decoder protocols agree? Generation with answer extraction and lm-eval's log-likelihood choice score the
same test examples of a multiple-choice task. Per (model, task) the report gives how often they pick the same answer
and how alike they rank the cells (Kendall's tau-b between the cells' mean accuracies, scipy)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy import stats

GENERATION, LOGLIK = "average", "average_loglik"  # the group metrics of the two protocols (tasks.instruction)


@dataclass(frozen=True)
class Agreement:
    """The protocols' agreement on one (model, task)."""

    model: str
    task: str
    cells: int  # cells with both protocols' mean accuracy
    tau: float  # Kendall's tau-b between those means (nan for fewer than 2 cells or a constant side)
    p_value: float  # two-sided, scipy.stats.kendalltau
    examples: int  # test examples scored by both protocols, pooled over the runs
    same_answer: float  # share of them where the extracted answer is the log-likelihood choice (no answer: differs)


def same_answers(predictions_file: Path) -> tuple[int, int]:
    """(test examples scored by both protocols, those where both picked the same answer) in one run's predictions."""
    both = same = 0
    with open(predictions_file, encoding="utf-8") as stream:
        for line in stream:
            row = json.loads(line)
            if row.get("split") == "test" and "loglik_choice" in row:
                both += 1
                same += row.get("extracted") is not None and str(row["extracted"]) == str(row["loglik_choice"])
    return both, same


def protocol_agreement(model: str, task: str, metric_rows: pd.DataFrame, predictions: list[Path]) -> Agreement | None:
    """The agreement on (`model`, `task`) from its cells' metric aggregates (`bench.report.write.metric_cells`) and its final
    runs' prediction files; None when the task is not scored by both protocols."""
    rows = metric_rows[
        (metric_rows["model"] == model) & (metric_rows["task"] == task) & ~metric_rows["failed"].astype(bool)
    ]
    means = rows.pivot_table(index=["method", "budget"], columns="metric", values="mean")
    if GENERATION not in means or LOGLIK not in means:
        return None
    means = means[[GENERATION, LOGLIK]].dropna()
    tau, p_value = math.nan, math.nan
    if len(means) >= 2 and means[GENERATION].nunique() > 1 and means[LOGLIK].nunique() > 1:
        result = stats.kendalltau(means[GENERATION], means[LOGLIK])
        tau, p_value = float(result.statistic), float(result.pvalue)
    counts = [same_answers(path) for path in predictions]
    examples = sum(both for both, _ in counts)
    same = sum(agreeing for _, agreeing in counts)
    same_answer = same / examples if examples else math.nan
    return Agreement(model, task, len(means), tau, p_value, examples, same_answer)
