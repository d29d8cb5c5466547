"""Collapsed predictions: runs that give one answer to (nearly) every test example of a set.

A model that answers "true" to every BoolQ question scores BoolQ's share of "true" labels: a number that reads like a
measurement of the method but is the label balance of the test slice. The report lists every final cell and test set
where a seed's predictions collapse, with what giving that answer to every example scores, so no such number is read as
a result. Each protocol is checked on its own: the classifier's prediction (GLUE), the answer extracted from the
generation, and the log-likelihood choice (decoder tasks). A regression (STS-B) collapses when nearly every
prediction lies within a sliver of the gold labels' spread (`REGRESSION_TOLERANCE`) of one value: the model outputs a
constant, whose correlation with the labels is noise, so its "constant score" is undefined. The sweep applies the same
check to the validation split of its tuning runs (`bench.sweep.tuning.choose_lrs`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

COLLAPSE_SHARE = 0.95  # a run collapsed on a set when its most common test answer covers at least this share of it
REGRESSION_TOLERANCE = 0.05  # real predictions this close to one value (× the gold labels' std) count as one answer
NO_ANSWER = "(no answer)"
COLUMNS = [
    "model",
    "task",
    "method",
    "budget",
    "test_set",
    "protocol",
    "seeds",
    "collapsed",
    "answers",
    "share",
    "constant_score",
]


@dataclass(frozen=True)
class Collapse:
    """One run's collapse on one test set under one protocol."""

    test_set: str  # the subtask ("boolq"), or "" for a task with a single test set
    protocol: str  # "classifier", "regression", "generation" or "log-likelihood"
    answer: str  # the most common answer, NO_ANSWER when nothing could be extracted
    share: float  # its share of the set's test predictions
    constant_score: float  # share of gold answers it matches (what always giving it scores); NaN for a regression


def answers(row: dict[str, Any]) -> dict[str, Any]:
    """A prediction row's categorical answers by protocol; none for a real-valued (regression) prediction."""
    if "prediction" in row:
        return {} if isinstance(row["prediction"], float) else {"classifier": row["prediction"]}
    found = {"generation": row.get("extracted")}
    if "loglik_choice" in row:
        found["log-likelihood"] = row["loglik_choice"]
    return found


def _matches(answer: Any, gold: Any) -> bool:
    if answer is None:
        return False
    try:
        return float(answer) == float(gold)
    except (TypeError, ValueError):
        return str(answer) == str(gold)


def _gold(row: dict[str, Any]) -> Any:
    return row["label"] if "label" in row else row["answer"]


def _split_rows(predictions_file: Path, split: str = "test") -> dict[str, list[dict[str, Any]]]:
    """A run's prediction rows of one split by set (the subtask, or "" for a task with a single set)."""
    by_set: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(predictions_file, encoding="utf-8") as stream:
        for line in stream:
            row = json.loads(line)
            if row.get("split") == split:
                by_set[row.get("subtask", "")].append(row)
    return dict(sorted(by_set.items()))


def _regression_collapse(test_set: str, rows: list[dict[str, Any]], threshold: float) -> Collapse | None:
    """The collapse of a set of real-valued predictions onto their median, if at least `threshold` of them lie within
    REGRESSION_TOLERANCE × the gold labels' standard deviation of it."""
    predictions = [row["prediction"] for row in rows]
    centre = statistics.median(predictions)
    width = REGRESSION_TOLERANCE * statistics.pstdev(_gold(row) for row in rows)
    share = sum(abs(prediction - centre) <= width for prediction in predictions) / len(predictions)
    if share < threshold:
        return None
    return Collapse(test_set, "regression", f"{centre:.3g}", share, math.nan)


def run_collapses(predictions_file: Path, threshold: float = COLLAPSE_SHARE, split: str = "test") -> list[Collapse]:
    """The (set, protocol) pairs on which one run's most common answer on `split` covers at least `threshold`."""
    found = []
    for test_set, rows in _split_rows(predictions_file, split).items():
        regression = isinstance(rows[0].get("prediction"), float)
        if regression and (collapse := _regression_collapse(test_set, rows, threshold)) is not None:
            found.append(collapse)
        for protocol in answers(rows[0]):
            answer, count = Counter(answers(row)[protocol] for row in rows).most_common(1)[0]
            if count / len(rows) >= threshold:
                gold = [_gold(row) for row in rows]
                found.append(
                    Collapse(
                        test_set=test_set,
                        protocol=protocol,
                        answer=NO_ANSWER if answer is None else str(answer),
                        share=count / len(rows),
                        constant_score=sum(_matches(answer, g) for g in gold) / len(gold),
                    )
                )
    return found


MAX_CHOICES = 5  # a set with more distinct gold answers (arithmetic's numbers) has no meaningful majority answer


def majority_shares(predictions_file: Path) -> dict[str, float]:
    """Per test set of a run's predictions, the largest share of one gold answer: what the best constant answer
    scores. Sets with more than MAX_CHOICES distinct gold answers are left out."""
    gold = {
        test_set: Counter(str(_gold(row)) for row in rows)
        for test_set, rows in _split_rows(predictions_file).items()
        if answers(rows[0])
    }
    return {
        test_set: counts.most_common(1)[0][1] / counts.total()
        for test_set, counts in gold.items()
        if len(counts) <= MAX_CHOICES
    }


def collapse_frame(runs: list[tuple[dict[str, Any], Path]]) -> pd.DataFrame:
    """Per cell (model, task, method, budget), test set and protocol with a collapsed seed: how many of the cell's
    seeds collapsed, their answers, the mean share of the top answer and the mean score of always giving it.
    `runs`: each final run's cell (the keys of `COLUMNS[:4]`) with its predictions file."""
    seeds: Counter[tuple[str, ...]] = Counter()
    hits: dict[tuple[str, ...], list[Collapse]] = defaultdict(list)
    for cell, predictions in runs:
        key = tuple(cell[name] for name in COLUMNS[:4])
        seeds[key] += 1
        for collapse in run_collapses(predictions):
            hits[(*key, collapse.test_set, collapse.protocol)].append(collapse)
    rows = [
        {
            **dict(zip(COLUMNS[:6], key)),
            "seeds": seeds[key[:4]],
            "collapsed": len(found),
            "answers": ", ".join(sorted({c.answer for c in found})),
            "share": sum(c.share for c in found) / len(found),
            "constant_score": sum(c.constant_score for c in found) / len(found),
        }
        for key, found in sorted(hits.items())
    ]
    return pd.DataFrame(rows, columns=COLUMNS)
