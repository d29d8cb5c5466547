"""Protocol agreement: answers counted by hand, and Kendall's tau-b and its exact p-value checked against an
enumeration of inversions (no ties, so tau-b is (concordant - discordant) / pairs)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest

from bench.report.agreement import GENERATION, LOGLIK, protocol_agreement, same_answers


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def inversions(order: tuple[int, ...]) -> int:
    return sum(a > b for a, b in itertools.combinations(order, 2))


def metric_rows(generation: list[float], loglik: list[float], failed: set[int] = frozenset()) -> pd.DataFrame:
    rows = [
        {"model": "m", "task": "commonsense/all", "method": "lora", "budget": f"{i}%", "metric": metric}
        | {"mean": value, "failed": i in failed}
        for metric, values in ((GENERATION, generation), (LOGLIK, loglik))
        for i, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_same_answers_counts_test_rows_scored_by_both_protocols(tmp_path: Path) -> None:
    rows = [
        {"split": "test", "extracted": "answer1", "loglik_choice": "answer1"},
        {"split": "test", "extracted": "answer2", "loglik_choice": "answer1"},
        {"split": "test", "extracted": None, "loglik_choice": "answer1"},  # nothing extracted: not the same answer
        {"split": "test", "extracted": "true", "loglik_choice": "true"},
        {"split": "test", "extracted": "18"},  # arithmetic: no log-likelihood choice
        {"split": "validation", "extracted": "answer1", "loglik_choice": "answer1"},
    ]
    assert same_answers(write_rows(tmp_path / "p.jsonl", rows)) == (4, 2)


def test_rank_agreement_is_kendalls_tau_with_its_exact_p_value(tmp_path: Path) -> None:
    generation, loglik = [10.0, 20.0, 30.0, 40.0], [10.0, 30.0, 20.0, 40.0]  # one swapped pair of six
    predictions = write_rows(tmp_path / "p.jsonl", [{"split": "test", "extracted": "a", "loglik_choice": "a"}] * 3)
    agreement = protocol_agreement("m", "commonsense/all", metric_rows(generation, loglik), [predictions] * 2)
    discordant = inversions((0, 2, 1, 3))
    assert agreement.tau == pytest.approx((6 - 2 * discordant) / 6)
    # exact null: every ranking of 4 cells is equally likely; p = share with |tau| at least as large
    taus = [(6 - 2 * inversions(order)) / 6 for order in itertools.permutations(range(4))]
    assert agreement.p_value == pytest.approx(sum(abs(t) >= agreement.tau - 1e-12 for t in taus) / len(taus))
    assert (agreement.cells, agreement.examples, agreement.same_answer) == (4, 6, 1.0)

    failed = protocol_agreement("m", "commonsense/all", metric_rows(generation, loglik, failed={1}), [predictions])
    assert failed.cells == 3  # a failed cell is not ranked
    assert protocol_agreement("m", "glue/sst2", metric_rows(generation, loglik), [predictions]) is None  # other task
    only_generation = metric_rows(generation, loglik)
    only_generation = only_generation[only_generation["metric"] == GENERATION]
    assert protocol_agreement("m", "commonsense/all", only_generation, [predictions]) is None
