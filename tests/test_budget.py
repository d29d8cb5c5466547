"""Budget strings and the generic budget-to-knob solver."""

from __future__ import annotations

import pytest

from bench.run.budget import parse_budget
from core.errors import BenchError
from methods.lora import LoRA


@pytest.mark.parametrize(
    ("text", "count", "percent"),
    [
        ("120k", 120_000, None),
        ("3.3M", 3_300_000, None),
        ("0.5%", None, 0.5),
        ("100%", None, 100.0),
        ("42", 42, None),
        ("1.5b", 1_500_000_000, None),
    ],
)
def test_parse_budget_accepts_counts_and_percentages(text: str, count: int | None, percent: float | None) -> None:
    budget = parse_budget(text)
    assert (budget.count, budget.percent) == (count, percent)


@pytest.mark.parametrize("text", ["abc", "-1%", "200%", "0%", "0", "1.2.3k", "5 %%", ""])
def test_parse_budget_rejects_malformed(text: str) -> None:
    with pytest.raises(BenchError, match="budget"):
        parse_budget(text)


def test_percentage_resolves_against_base_params() -> None:
    assert parse_budget("0.5%").resolve(22_713_216) == 113_566
    assert parse_budget("120k").resolve(22_713_216) == 120_000


def test_solver_picks_the_closest_rank_and_rejects_unreachable(minilm_classifier) -> None:
    method = LoRA(minilm_classifier.model, head_prefixes=minilm_classifier.head_prefixes)
    per_rank = 6 * 2 * (384 + 384)  # MiniLM: 6 layers, q and v, each 384x384
    assert method.solve_budget(10 * per_rank) == 10
    assert method.solve_budget(10 * per_rank + per_rank // 2 - 1) == 10
    assert method.solve_budget(10 * per_rank + per_rank // 2 + 1) == 11
    with pytest.raises(BenchError, match=f"between {per_rank:,} and {384 * per_rank:,}"):
        method.solve_budget(385 * per_rank)
    with pytest.raises(BenchError, match="unreachable"):
        method.solve_budget(per_rank - 1)
