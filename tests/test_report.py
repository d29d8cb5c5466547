"""`bench report` on the tiny real store: table numbers equal aggregates computed here from the records, ties,
plateau fits, figures, LaTeX, and the store folder layout."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest

from bench import plateau, stats
from bench.record import read_records
from bench.report import write_report
from tests.test_sweep import tiny_store


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    return write_report(Path(tiny_store(tmp_path_factory.getbasetemp())["store"]), log_to_wandb=True)


def expected_cells(store: Path) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(method, budget) -> mean, sample std and n of test accuracy in points, straight from the record files."""
    scores: dict[tuple[str, str], list[float]] = {}
    for record in read_records(store):
        if record["status"] == "ok":
            budget = record["config"]["budget"] or "all"
            scores.setdefault((record["config"]["method"], budget), []).append(100 * record["metrics"]["test"]["accuracy"])
    return {cell: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for cell, v in scores.items()}


def test_table_numbers_equal_the_aggregates_of_the_stored_records(report) -> None:
    expected = expected_cells(report.folder.parent)
    assert len(expected) == 2
    for _, row in report.cells.iterrows():
        mean, std, n = expected[(row["method"], row["budget"])]
        assert row["score_mean"] == pytest.approx(mean, abs=1e-9) and row["score_std"] == pytest.approx(std, abs=1e-9) and row["score_n"] == n
    markdown = (report.folder / "results.md").read_text()
    for (method, budget), (mean, std, _) in expected.items():
        label = {"full": "Full FT", "lora": "LoRA"}[method]
        shown = "100%" if method == "full" else budget
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {label} | {shown} |"))
        assert f"{mean:.1f} ± {std:.1f}" in line, line


def test_best_is_bold_and_ties_come_from_a_paired_test(report) -> None:
    cells = report.cells.sort_values("score_mean", ascending=False).reset_index(drop=True)
    table = report.tables[0]
    markdown = table.markdown()
    assert markdown.count("**") == 2 * sum(cells["score_mean"] == cells["score_mean"].max())
    best, other = cells.iloc[0], cells.iloc[1]
    store = report.folder.parent

    def per_example(keys: list[str]) -> dict:
        return stats.seed_averaged(stats.read_example_scores(store / f"{key}.predictions.jsonl") for key in keys)

    p = stats.paired_permutation_p(per_example(best["keys"]), per_example(other["keys"]))
    csv_row = next(line for line in (report.folder / "cells.csv").read_text().splitlines()[1:] if f",{other['method']},{other['budget']}," in line)
    assert (p >= stats.ALPHA) == csv_row.endswith(",True")
    assert ("†" in markdown) == (p >= stats.ALPHA)


def test_paired_permutation_test_separates_different_systems() -> None:
    rng = np.random.default_rng(0)
    strong = {i: float(rng.random() < 0.9) for i in range(300)}
    weak = {i: float(rng.random() < 0.5) for i in range(300)}
    assert stats.paired_permutation_p(strong, weak) < 0.001
    assert stats.paired_permutation_p(strong, dict(strong)) == 1.0
    assert stats.example_score({"label": 3.0, "prediction": 2.5}) == -0.5  # STS-B: a real-valued prediction
    assert stats.example_score({"label": 1, "prediction": 1}) == 1.0 and stats.example_score({"correct": False, "answer": "A"}) == 0.0


def test_plateau_fit_recovers_a_known_curve_and_refuses_too_few_points() -> None:
    params = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6]
    truth = lambda p: 80 - 30 * math.exp(-1.5 * (math.log10(p) - 4))  # noqa: E731
    rng = np.random.default_rng(1)
    fit = plateau.fit_plateau({p: [truth(p) + rng.normal(0, 0.3) for _ in range(3)] for p in params})
    assert fit.status == "ok" and fit.asymptote == pytest.approx(80, abs=1.5)
    assert fit.asymptote_ci[0] <= fit.asymptote <= fit.asymptote_ci[1]
    onset = 10 ** (4 + math.log(30 / plateau.ONSET_TOLERANCE) / 1.5)
    assert fit.onset_params == pytest.approx(onset, rel=0.5)
    assert plateau.fit_plateau({p: [truth(p)] for p in params[:3]}).status == "too few points"


def test_report_files_figures_and_honest_anchor_note(report) -> None:
    folder = report.folder
    for name in ("results.md", "tables.tex", "cells.csv", "runs.csv", "summary.json", "plateau.json"):
        assert (folder / name).is_file(), name
    for stem in ("plateau_minilm-l6_glue-sst2", "pareto_minilm-l6_glue-sst2"):
        for suffix in (".png", ".pdf"):
            assert (folder / "figures" / f"{stem}{suffix}").stat().st_size > 1000
    markdown = (folder / "results.md").read_text()
    assert "No published anchor matches minilm-l6" in markdown
    assert "too few points" in markdown  # one budget per method cannot support a plateau fit
    latex = (folder / "tables.tex").read_text()
    assert r"\textbf{" in latex and r"\begin{tabular}" in latex
    summary = json.loads((folder / "summary.json").read_text())
    assert {(c["method"], c["budget"]) for c in summary["cells"]} == {("full", "all"), ("lora", "0.5%")}
    assert report.wandb_mode == "offline"
    assert any(
        re.search("report", path.read_text(errors="ignore")) for path in (folder.parent / "wandb").glob("offline-run-*/files/wandb-metadata.json")
    ) or list((folder.parent / "wandb").glob("offline-run-*"))
