"""The plateau contrasts against independent computations: a gain (two cells) is the paired-difference t-interval
computed with numpy, a gain difference (four cells) the two-way (cell + seed) interval computed with numpy, both
unmoved by any shift shared by a seed's runs; on synthetic stores with a known truth the intervals cover it 95 % of
the time; the detectable difference is statsmodels' TTestPower for a paired test, and a simulation at it rejects
80 % of the time; and `bench report` writes the section and contrasts.csv for a synthetic two-task store, with the
plateau fits printed or "not identifiable" as the rule says."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.power import TTestPower

from bench.report import contrasts
from bench.report.write import write_report

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "results" / "plateau"  # committed records: the synthetic runs copy their layout


def view(scores: dict[tuple[str, str, float], list[float]]) -> pd.DataFrame:
    """Runs of (method, budget, params) cells, scores listed by seed."""
    return pd.DataFrame(
        [
            {"method": method, "budget": budget, "params": params, "seed": seed, "score": score}
            for (method, budget, params), values in scores.items()
            for seed, score in enumerate(values)
        ]
    )


def paired_t(differences: np.ndarray) -> tuple[float, float, float]:
    """Mean of per-seed differences with its 95 % t-interval, from the textbook formula."""
    n = len(differences)
    half = scipy_stats.t.ppf(0.975, n - 1) * differences.std(ddof=1) / math.sqrt(n)
    return differences.mean(), differences.mean() - half, differences.mean() + half


def two_way(table: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """A contrast of the rows of `table` (cells × seeds) with its 95 % interval under cell + seed effects, by hand:
    residual = y − cell mean − seed mean + grand mean on (C − 1)(S − 1) degrees of freedom."""
    cells, seeds = table.shape
    residual = table - table.mean(1, keepdims=True) - table.mean(0, keepdims=True) + table.mean()
    df = (cells - 1) * (seeds - 1)
    se = math.sqrt((residual**2).sum() / df * (weights**2).sum() / seeds)
    value = weights @ table.mean(1)
    half = scipy_stats.t.ppf(0.975, df) * se
    return value, value - half, value + half


def four_cells(rng: np.random.Generator, difference: float = 1.0, seeds: int = 4) -> pd.DataFrame:
    """SMT and LoRA at the ends of a decade; SMT gains `difference` more; cells with unequal noise; seed effects."""
    shift = rng.normal(0, 3.0, seeds)
    truth = {("smt", "320k", 3.2e5): 84.0, ("smt", "3.5M", 3.5e6): 85.5 + difference, ("lora", "320k", 3.2e5): 86.0}
    truth[("lora", "3.5M", 3.5e6)] = 87.5
    noise = {("smt", "320k", 3.2e5): 1.5, ("smt", "3.5M", 3.5e6): 0.6, ("lora", "320k", 3.2e5): 0.3}
    noise[("lora", "3.5M", 3.5e6)] = 0.8
    return view({cell: list(mean + shift + rng.normal(0, noise[cell], seeds)) for cell, mean in truth.items()})


GAIN_DIFFERENCE = {("smt", "3.5M"): 1.0, ("smt", "320k"): -1.0, ("lora", "3.5M"): -1.0, ("lora", "320k"): 1.0}


def test_a_gain_is_the_paired_difference_t_interval() -> None:
    runs = four_cells(np.random.default_rng(1), seeds=3)
    estimate = contrasts.contrast(runs, {("smt", "3.5M"): 1.0, ("smt", "320k"): -1.0})
    by_cell = runs.pivot_table(index="seed", columns=["method", "budget"], values="score")
    value, low, high = paired_t((by_cell[("smt", "3.5M")] - by_cell[("smt", "320k")]).to_numpy())
    assert estimate.df == 2 and estimate.value == pytest.approx(value)
    assert estimate.interval() == pytest.approx((low, high))
    paired = scipy_stats.ttest_rel(by_cell[("smt", "3.5M")], by_cell[("smt", "320k")], alternative="less")
    assert estimate.p_value("less") == pytest.approx(paired.pvalue)


def test_a_gain_difference_is_the_two_way_interval_and_ignores_seed_shifts() -> None:
    runs = four_cells(np.random.default_rng(2))
    estimate = contrasts.contrast(runs, GAIN_DIFFERENCE)
    table = np.array(
        [runs[(runs["method"] == m) & (runs["budget"] == b)].sort_values("seed")["score"] for m, b in GAIN_DIFFERENCE]
    )
    value, low, high = two_way(table, np.array(list(GAIN_DIFFERENCE.values())))
    assert estimate.df == 9 and estimate.value == pytest.approx(value)
    assert estimate.interval() == pytest.approx((low, high))
    shifted = runs.assign(score=runs["score"] + runs["seed"].map(lambda seed: 10.0 * (-1) ** seed + seed))
    moved = contrasts.contrast(shifted, GAIN_DIFFERENCE)
    assert (moved.value, moved.se) == pytest.approx((estimate.value, estimate.se))


def test_intervals_cover_a_known_difference_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    covered = [
        low <= 1.0 <= high
        for low, high in (contrasts.contrast(four_cells(rng, seeds=3), GAIN_DIFFERENCE).interval() for _ in range(400))
    ]
    assert 0.92 <= np.mean(covered) <= 0.98


@pytest.mark.parametrize("seeds", [3, 5, 8])
def test_the_detectable_difference_is_statsmodels_power_for_a_paired_test(seeds: int) -> None:
    spread = 1.7  # sd of the per-seed differences
    for alternative, theirs in (("two-sided", "two-sided"), ("less", "smaller")):
        effect = abs(TTestPower().solve_power(nobs=seeds, alpha=0.05, power=contrasts.POWER, alternative=theirs))
        ours = contrasts.detectable_difference(spread / math.sqrt(seeds), seeds - 1, alternative)
        assert ours == pytest.approx(effect * spread, rel=1e-4)


def test_a_gain_difference_at_the_detectable_size_is_found_80_percent_of_the_time() -> None:
    # every cell's noise sd 1.0, three seeds: the contrast's se is 2/sqrt(3) on 3·2 degrees of freedom
    size = contrasts.detectable_difference(2 / math.sqrt(3), 6)
    rng = np.random.default_rng(5)
    truth = {("smt", "320k", 3.2e5): 0.0, ("smt", "3.5M", 3.5e6): size, ("lora", "320k", 3.2e5): 0.0}
    truth[("lora", "3.5M", 3.5e6)] = 0.0
    found = []
    for _ in range(1000):
        shift = rng.normal(0, 2.0, 3)
        runs = view({cell: list(mean + shift + rng.normal(0, 1.0, 3)) for cell, mean in truth.items()})
        found.append(contrasts.contrast(runs, GAIN_DIFFERENCE).p_value() < 0.05)
    assert np.mean(found) == pytest.approx(contrasts.POWER, abs=0.04)


def test_which_contrasts_a_view_gets() -> None:
    rng = np.random.default_rng(6)
    cells = {
        ("lora", "32k", 3.2e4): 84.0,
        ("lora", "320k", 3.2e5): 86.0,
        ("lora", "1M", 1e6): 86.5,
        ("lora", "3.5M", 3.5e6): 86.0,
        ("smt", "320k", 3.2e5): 83.0,
        ("smt", "2.65M", 2.65e6): 85.0,
        ("svfit", "576", 576.0): 78.0,
        ("svfit", "4608", 4608.0): 82.0,
        ("full", "all", 2.2e7): 89.0,
    }
    runs = view({cell: list(mean + rng.normal(0, 0.5, 3)) for cell, mean in cells.items()})
    rows = pd.DataFrame(contrasts.view_contrasts(runs))
    assert set(zip(rows["kind"], rows["method"], rows["reference"])) == {
        ("gain", "lora", ""),
        ("gain", "smt", ""),
        ("gain", "svfit", ""),  # its own gain; its last decade is far below LoRA's, so no difference
        ("difference", "smt", "lora"),  # no DoRA in the view
        ("decline", "lora", ""),  # the peak, 1M, lies below the largest budget
    }
    decline = rows[rows["kind"] == "decline"].iloc[0]
    assert (decline["base_params"], decline["top_params"]) == (1e6, 3.5e6)
    by_cell = runs.pivot_table(index="seed", columns="budget", values="score")
    one_sided = scipy_stats.ttest_rel(by_cell["3.5M"], by_cell["1M"], alternative="less")
    assert decline["p"] == pytest.approx(one_sided.pvalue) and decline["ci_low"] == -math.inf
    half = scipy_stats.t.ppf(0.95, 2) * (by_cell["3.5M"] - by_cell["1M"]).std() / math.sqrt(3)
    assert decline["ci_high"] == pytest.approx(decline["estimate"] + half)
    assert rows.loc[rows["method"] == "smt", "decades"].iloc[0] == pytest.approx(math.log10(2.65e6 / 3.2e5))


def template(task: str) -> dict:
    """A committed LoRA record of `task`, as the layout of synthetic runs."""
    for path in sorted(TEMPLATES.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("status") == "ok" and record["config"]["method"] == "lora" and record["task"]["name"] == task:
            return record
    raise AssertionError(f"no committed LoRA record of {task}")


def synthetic_record(base: dict, method: str, budget: str, params: float, seed: int, score: float) -> dict:
    record = copy.deepcopy(base)
    for name in ("curves", "artifacts"):
        record.pop(name, None)
    metric = record["task"]["primary_metric"]
    record["run_key"] = hashlib.sha256(f"{record['task']['name']} {method} {budget} {seed}".encode()).hexdigest()
    record["config"] |= {"method": method, "budget": budget, "seed": seed}
    record["method"]["name"] = method
    record["params"] |= {"budget": budget, "achieved": int(params), "achieved_pct": 100 * params / 22713216}
    record["metrics"] = {"validation": {metric: score / 100}, "test": {metric: score / 100}}
    return record


def curve_points(method: str) -> dict[tuple[str, float], float]:
    """Seed-free means of a synthetic method's curve, by (budget, params)."""
    if method == "svfit":  # 4 points, accelerating: the fit's rate sits at its lower bound
        return {(str(p), float(p)): m for p, m in zip((144, 576, 2304, 4608), (76.0, 76.5, 77.0, 79.5))}
    budgets = [("10k", 1e4), ("32k", 3.2e4), ("100k", 1e5), ("320k", 3.2e5), ("1M", 1e6), ("3.5M", 3.5e6)]
    rate = {"lora": 2.0, "dora": 1.5, "smt": 0.7, "row-sft": 1.0}[method]
    return {cell: 86 - 8 * math.exp(-rate * (math.log10(cell[1]) - 4)) for cell in budgets}


SEEDS = {"lora": 3, "dora": 3, "smt": 3, "svfit": 3, "row-sft": 5}


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("synthetic") / "plateau"
    folder.mkdir()
    rng = np.random.default_rng(8)
    shift = rng.normal(0, 0.8, 5)
    runs = []
    for task in ("glue/sst2", "glue/stsb"):
        base = template(task)
        for method, seeds in SEEDS.items():
            for (budget, params), mean in curve_points(method).items():
                for seed in range(seeds):
                    score = mean + shift[seed] + rng.normal(0, 0.3)
                    runs.append({"task": task, "method": method, "budget": budget, "seed": seed, "score": score})
                    record = synthetic_record(base, method, budget, params, seed, score)
                    (folder / f"{record['run_key']}.json").write_text(json.dumps(record))
    return write_report(folder, log_to_wandb=False), pd.DataFrame(runs)


def markdown_row(markdown: str, *first: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[: len(first)] == list(first):
            return cells
    raise AssertionError(f"no row {first}")


def test_the_report_prints_contrasts_and_readable_fits_only(synthetic_report) -> None:
    report, runs = synthetic_report
    markdown = report.markdown_path.read_text()
    fits = markdown[markdown.index("## Plateau fits") : markdown.index("## Plateau contrasts")]
    svfit = markdown_row(fits, "minilm-l6", "glue/sst2", "SVFit")
    assert svfit[4:6] == ["not identifiable", "not identifiable"]
    assert "4 budget(s); a fit needs at least 5" in svfit[-1] and "rate c = 0.001 at its lower bound" in svfit[-1]
    lora = markdown_row(fits, "minilm-l6", "glue/sst2", "LoRA")
    assert "3 seed(s) at every budget allow 10 distinct paired bootstrap resamples" in lora[-1]
    row_sft = markdown_row(fits, "minilm-l6", "glue/sst2", "row-SFT")  # 6 budgets, 5 seeds
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, (\d+\.\d|not reached)\]", row_sft[4]), row_sft

    section = markdown[markdown.index("## Plateau contrasts") :]
    weights = np.array([1, -1, -1, 1])
    for task, scores in (
        *runs.groupby("task"),
        ("average", runs.groupby(["method", "budget", "seed"])["score"].mean()),
    ):
        scores = scores.reset_index() if task == "average" else scores
        table = np.array(
            [
                scores[(scores["method"] == m) & (scores["budget"] == b)].sort_values("seed")["score"]
                for m, b in (("smt", "3.5M"), ("smt", "320k"), ("lora", "3.5M"), ("lora", "320k"))
            ]
        )
        value, low, high = two_way(table, weights)
        row = markdown_row(section, "minilm-l6", task, "SMT − LoRA")
        assert row[3:6] == ["320,000 → 3,500,000 (1.04)", "3", f"{value:+.1f} [{low:+.1f}, {high:+.1f}]"]
    assert markdown_row(section, "minilm-l6", "glue/sst2", "row-SFT − DoRA")[4] == "5"
    saved = pd.read_csv(report.folder / "contrasts.csv")
    assert set(saved["task"]) == {"glue/sst2", "glue/stsb", "average"}
    assert set(saved.loc[saved["method"] == "svfit", "kind"]) == {"gain"}  # its decade is far below LoRA's and DoRA's
    assert set(saved.loc[saved["kind"] == "difference", "reference"]) == {"lora", "dora"}
    assert "- minilm-l6 · average: gain differences of" in section
