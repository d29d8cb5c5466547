"""`bench report` on the tiny real store: table numbers and t-intervals equal aggregates computed here from the
records, ties from scipy's permutation test checked against exact enumeration, plateau fits whose onset stays within the
sweep, LaTeX table environments, the cost table and Pareto plot from isolated memory only, failed and missing runs
listed and never ranked, every metric of a task as a column (copies of the tiny store with edited metrics stand in for
MRPC and a decoder group), and one name and colour per method across figures."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import statistics
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench.records.record import read_records
from bench.report import plateau, plots, stats
from bench.report.write import write_report
from core.errors import BenchError
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
            scores.setdefault((record["config"]["method"], budget), []).append(
                100 * record["metrics"]["test"]["accuracy"]
            )
    return {
        cell: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for cell, v in scores.items()
    }


T_975 = {
    1: 12.706204736174707,
    2: 4.302652729749464,
}  # Student-t 97.5 % quantiles for 1 and 2 degrees of freedom (printed tables)


def table_row(markdown: str, *first: str) -> list[str]:
    """The cells of the Markdown table row whose leading cells are `first`."""
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[: len(first)] == list(first):
            return cells
    raise AssertionError(f"no row {first} in\n{markdown}")


def test_table_numbers_and_intervals_equal_the_aggregates_of_the_stored_records(report) -> None:
    expected = expected_cells(report.folder.parent)
    assert len(expected) == 2
    for _, row in report.cells.iterrows():
        mean, std, n = expected[(row["method"], row["budget"])]
        assert (
            row["score_mean"] == pytest.approx(mean, abs=1e-9)
            and row["score_std"] == pytest.approx(std, abs=1e-9)
            and row["score_n"] == n
        )
    markdown = (report.folder / "results.md").read_text()
    for (method, budget), (mean, std, n) in expected.items():
        cells = table_row(markdown, {"full": "Full FT", "lora": "LoRA"}[method], "100%" if method == "full" else budget)
        half = T_975[n - 1] * std / math.sqrt(n)
        low, high = max(mean - half, 0.0), min(mean + half, 100.0)
        assert cells[3].strip("*†‡") == f"{mean:.1f} ± {std:.1f} [{low:.1f}, {high:.1f}]", cells


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
    csv_row = next(
        line
        for line in (report.folder / "cells.csv").read_text().splitlines()[1:]
        if f",{other['method']},{other['budget']}," in line
    )
    if other["score_mean"] == best["score_mean"]:  # both are best: bold, and neither is marked as a tie
        assert not csv_row.endswith(",True") and "†" not in markdown
        return
    assert (p >= stats.ALPHA) == csv_row.endswith(",True")
    assert ("†" in markdown) == (p >= stats.ALPHA)


def test_paired_permutation_test_equals_exact_enumeration_and_separates_different_systems() -> None:
    a = [1.0, 0.0, 1.0, 1.0, -0.5, 1.0, 0.0, 1.0, 1.0, 1.0]
    b = [0.0, 0.0, 1.0, 0.0, -1.5, 1.0, 1.0, 0.0, 0.0, 1.0]
    differences = [x - y for x, y in zip(a, b)]
    observed = abs(sum(differences))
    flips = list(itertools.product((1, -1), repeat=len(differences)))
    extreme = sum(abs(sum(sign * d for sign, d in zip(signs, differences))) >= observed - 1e-12 for signs in flips)
    assert stats.paired_permutation_p(dict(enumerate(a)), dict(enumerate(b))) == pytest.approx(
        extreme / len(flips), abs=1e-12
    )
    rng = np.random.default_rng(0)
    strong = {i: float(rng.random() < 0.9) for i in range(300)}
    weak = {i: float(rng.random() < 0.5) for i in range(300)}
    assert stats.paired_permutation_p(strong, weak) < 0.001
    assert stats.paired_permutation_p(strong, dict(strong)) == 1.0
    assert stats.example_score({"label": 3.0, "prediction": 2.5}) == -0.5  # STS-B: a real-valued prediction
    assert (
        stats.example_score({"label": 1, "prediction": 1}) == 1.0
        and stats.example_score({"correct": False, "answer": "A"}) == 0.0
    )


def by_seed(scores: list[float]) -> dict[int, float]:
    """Scores listed in seed order, as the {seed: score} a plateau fit reads."""
    return dict(enumerate(scores))


def test_plateau_fit_recovers_a_known_curve_and_refuses_too_few_points() -> None:
    params = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6]
    truth = lambda p: 80 - 30 * math.exp(-1.5 * (math.log10(p) - 4))  # noqa: E731
    rng = np.random.default_rng(1)
    fit = plateau.fit_plateau({p: by_seed([truth(p) + rng.normal(0, 0.3) for _ in range(5)]) for p in params})
    assert fit.status == "ok" and fit.reasons == [] and fit.asymptote == pytest.approx(80, abs=1.5)
    assert fit.asymptote_ci[0] <= fit.asymptote <= fit.asymptote_ci[1]
    onset = 10 ** (4 + math.log(30 / plateau.ONSET_TOLERANCE) / 1.5)
    assert fit.onset_params == pytest.approx(onset, rel=0.5)
    assert fit.onset_ci[0] <= fit.onset_params <= fit.onset_ci[1] <= params[-1]
    few = plateau.fit_plateau({p: by_seed([truth(p)] * 5) for p in params[:3]})
    assert few.status == "not identifiable" and few.reasons == ["3 budget(s); a fit needs at least 5"]
    assert few.asymptote is None and few.onset_params is None and few.coefficients is None


def test_plateau_onset_is_never_past_the_largest_budget() -> None:
    # still rising at the largest budget (22.7M-parameter model, budgets up to 1 %): the onset is "not reached"
    params = [2.3e4, 4.6e4, 6.8e4, 1.1e5, 2.3e5]
    rng = np.random.default_rng(2)
    rising = plateau.fit_plateau(
        {p: by_seed([50 + 8 * math.log10(p / 2.3e4) + rng.normal(0, 0.5) for _ in range(5)]) for p in params}
    )
    assert (
        rising.status == "ok"
        and rising.onset_params is None
        and (rising.onset_ci is None or rising.onset_ci[1] is None)
    )
    assert rising.asymptote is None and rising.asymptote_ci is None  # an asymptote past the sweep is an extrapolation
    assert any(note.startswith("onset not reached within the sweep") for note in rising.notes)
    # near the top of the sweep: some bootstrap refits reach the plateau only past it, so both upper bounds say so
    wide = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6]
    noise = np.random.default_rng(3)
    late = plateau.fit_plateau(
        {
            p: by_seed([80 - 30 * math.exp(-1.5 * (math.log10(p) - 4)) + noise.normal(0, 1.0) for _ in range(5)])
            for p in wide
        }
    )
    assert late.onset_params is not None and late.onset_ci[1] is None and late.asymptote_ci[1] is None
    assert late.asymptote_ci[0] <= late.asymptote
    flat = plateau.fit_plateau({p: by_seed([70 + rng.normal(0, 0.2) for _ in range(5)]) for p in wide})
    assert flat.onset_params == pytest.approx(wide[0])  # already on the plateau: clipped to the smallest budget


def welch_interval(before: list[float], after: list[float]) -> tuple[float, float]:
    """Welch's 95% interval for mean(after) − mean(before), from its textbook formula (Welch–Satterthwaite df)."""
    va, vb = statistics.variance(after) / len(after), statistics.variance(before) / len(before)
    df = (va + vb) ** 2 / (va**2 / (len(after) - 1) + vb**2 / (len(before) - 1))
    half = scipy_stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    delta = statistics.mean(after) - statistics.mean(before)
    return delta - half, delta + half


def test_plateau_section_compares_the_largest_budget_with_full_fine_tuning(report) -> None:
    scores: dict[str, list[float]] = {}
    for record in read_records(report.folder.parent):
        if record["status"] == "ok" and record["config"]["method"] in ("full", "lora"):
            scores.setdefault(record["config"]["method"], []).append(100 * record["metrics"]["test"]["accuracy"])
    markdown = report.markdown_path.read_text()
    row = table_row(markdown[markdown.index("## Plateau fits") :], "minilm-l6", "glue/sst2", "LoRA")
    low, high = welch_interval(scores["full"], scores["lora"])
    delta = statistics.mean(scores["lora"]) - statistics.mean(scores["full"])
    verdict = "rises" if low > 0 else "falls" if high < 0 else "flat"
    assert row[-2] == f"{delta:+.1f} [{low:+.1f}, {high:+.1f}] {verdict}"
    assert row[-3] == "–"  # one budget: no last decade


def test_last_decade_and_full_ft_changes_are_welch_intervals_with_a_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plateau, "BOOTSTRAP", 20)  # Welch intervals here; the bootstrap CIs are tested above
    params = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6]
    offsets = [-0.4, 0.1, 0.3]
    falling = {p: by_seed([m + o for o in offsets]) for p, m in zip(params, [70, 75, 80, 82, 81, 76])}
    fit = plateau.fit_plateau(falling, full=[84.0, 85.0, 84.5])
    assert fit.last_decade_from == 3e5  # the budget nearest one decade below 3M
    assert fit.last_decade.delta == pytest.approx(-6.0) and fit.last_decade.verdict == "falls"
    assert fit.last_decade.ci == pytest.approx(welch_interval(list(falling[3e5].values()), list(falling[3e6].values())))
    assert fit.declines_after_peak and any("below the peak" in note for note in fit.notes)
    assert fit.versus_full.ci == pytest.approx(welch_interval([84.0, 85.0, 84.5], list(falling[3e6].values())))
    assert fit.versus_full.verdict == "falls"

    rising = plateau.fit_plateau({p: by_seed([50 + 5 * math.log10(p) + o for o in offsets]) for p in params})
    assert rising.last_decade.verdict == "rises" and not rising.declines_after_peak and rising.versus_full is None
    noisy = plateau.fit_plateau({p: by_seed([80 + o for o in (-2.0, 0.0, 2.5)]) for p in params})
    assert noisy.last_decade.verdict == "flat" and not noisy.declines_after_peak
    one_seed = plateau.fit_plateau({p: {0: 80.0 + i} for i, p in enumerate(params)})
    assert one_seed.last_decade.ci is None and one_seed.last_decade.verdict == "one seed"
    saved = json.loads(json.dumps(fit.as_dict()))
    assert saved["last_decade"]["verdict"] == "falls" and saved["versus_full"]["delta"] == pytest.approx(-8.5)


def test_report_files_figures_latex_tables_and_honest_anchor_note(report) -> None:
    folder = report.folder
    for name in ("results.md", "tables.tex", "cells.csv", "metrics.csv", "runs.csv", "summary.json", "plateau.json"):
        assert (folder / name).is_file(), name
    for suffix in (".png", ".pdf"):
        assert (folder / "figures" / f"plateau_minilm-l6_glue-sst2{suffix}").stat().st_size > 1000
    markdown = (folder / "results.md").read_text()
    assert "No published anchor matches minilm-l6" in markdown
    assert "not identifiable" in markdown  # one budget per method cannot support a plateau fit
    assert "1 budget(s); a fit needs at least 5" in markdown
    latex = (folder / "tables.tex").read_text()
    for table in ("results-minilm-l6", "cost-minilm-l6"):
        block = next(block for block in latex.split(r"\end{table}") if f"tab:{table}" in block)
        assert (
            block.strip().startswith(r"\begin{table}")
            and r"\caption{" in block
            and rf"\label{{tab:{table}}}" in block
            and r"\toprule" in block
            and r"\bottomrule" in block
        )
    assert r"\bfseries" in latex and r"Trainable \%" in latex and "100\\%" in latex
    summary = json.loads((folder / "summary.json").read_text())
    assert {(c["method"], c["budget"]) for c in summary["cells"]} == {("full", "all"), ("lora", "0.5%")}
    assert report.wandb_mode == "offline"
    assert any(
        re.search("report", path.read_text(errors="ignore"))
        for path in (folder.parent / "wandb").glob("offline-run-*/files/wandb-metadata.json")
    ) or list((folder.parent / "wandb").glob("offline-run-*"))


def test_cost_table_and_pareto_use_only_memory_measured_in_isolation(report) -> None:
    records = [record for record in read_records(report.folder.parent) if record["status"] == "ok"]
    isolated = {(r["config"]["method"], r["config"]["seed"]): r["cost"]["memory_isolated"] for r in records}
    assert (
        sum(isolated.values()) >= 1
    )  # each sweep process's first run; the restarted sweep runs more in the same process
    assert not all(isolated.values())
    cost = next(table for table in report.tables if table.name == "cost-minilm-l6").markdown()
    for method, label in (("full", "Full FT"), ("lora", "LoRA")):
        memories = [
            r["cost"]["peak_memory_bytes"] / 2**20
            for r in records
            if r["config"]["method"] == method and r["cost"]["memory_isolated"]
        ]
        shown = table_row(cost, "sst2", label)[-1]
        assert shown == "not isolated" if not memories else shown.startswith(f"{statistics.mean(memories):,.0f}"), shown
    pareto = report.folder / "figures" / "pareto_minilm-l6_glue-sst2.png"
    assert pareto.is_file() == any(isolated.values())


def derived_store(tiny: Path, folder: Path, edit) -> Path:
    """A copy of the tiny store's records, predictions and sweep.json with `edit(records, manifest)` applied."""
    folder.mkdir()
    for path in tiny.glob("*.predictions.jsonl"):
        shutil.copy(path, folder / path.name)
    records = [record for record in read_records(tiny) if record["status"] == "ok"]
    manifest = json.loads((tiny / "sweep.json").read_text())
    edit(records, manifest)
    for record in records:
        (folder / f"{record['run_key']}.json").write_text(json.dumps(record))
    (folder / "sweep.json").write_text(json.dumps(manifest))
    return folder


def test_failed_and_missing_runs_are_listed_and_never_ranked(report, tmp_path: Path) -> None:
    def edit(records: list[dict], manifest: dict) -> None:
        for record in records:
            if record["config"]["method"] == "full":
                record["metrics"]["test"]["accuracy"] = math.nan  # a diverged run: its metric is not a number
            record["cost"]["memory_isolated"] = False
        missing = json.loads(json.dumps(manifest["cells"][0]))
        missing |= {"key": "0" * 64, "label": "lora 0.5% seed=7"}
        missing["config"] |= {"method": "lora", "budget": "0.5%", "seed": 7}
        manifest["cells"].append(missing)

    store = derived_store(report.folder.parent, tmp_path / "store", edit)
    derived = write_report(store, log_to_wandb=False)
    markdown = (derived.folder / "results.md").read_text()
    section = markdown[markdown.index("## Failed and missing runs") :]
    assert table_row(section, "minilm-l6", "glue/sst2", "LoRA", "0.5%", "7", "missing")
    for seed in ("0", "1"):
        assert (
            table_row(section, "minilm-l6", "glue/sst2", "Full FT", "all", seed, "metric failed")[-1]
            == "accuracy is nan"
        )
    results = derived.tables[0].markdown()
    assert table_row(results, "Full FT", "100%")[3] == "failed"
    assert (
        table_row(results, "LoRA", "0.5%")[3].startswith("**") and "†" not in results
    )  # the only ranked cell is the best
    summary = json.loads((derived.folder / "summary.json").read_text())
    assert [c["method"] for c in summary["cells"]] == ["lora"]
    assert "full" not in {row["method"] for row in json.loads((derived.folder / "plateau.json").read_text())}
    assert not (derived.folder / "figures" / "pareto_minilm-l6_glue-sst2.png").exists()
    assert "No Pareto plot for minilm-l6 · glue/sst2: no cell's peak memory was measured in isolation" in markdown
    assert (
        table_row(next(t for t in derived.tables if t.name == "cost-minilm-l6").markdown(), "sst2", "LoRA")[-1]
        == "not isolated"
    )


def test_every_metric_of_a_task_is_a_column(report, tmp_path: Path) -> None:
    def edit(records: list[dict], manifest: dict) -> None:
        for record in records:
            shift = 0.01 * record["config"]["seed"] + (0.1 if record["config"]["method"] == "lora" else 0.0)
            record["task"] |= {"name": "glue/mrpc", "primary_metric": "f1"}
            record["metrics"]["test"] = {"f1": 0.7 + shift, "accuracy": 0.6 + shift}
            record["metrics"]["validation"] = dict(record["metrics"]["test"])
            record["config"]["task"] = "glue/mrpc"

    derived = write_report(derived_store(report.folder.parent, tmp_path / "store", edit), log_to_wandb=False)
    results = derived.tables[0].markdown()
    assert table_row(results, "Method", "Budget", "Trainable %")[3:] == ["mrpc F1", "mrpc Acc"]
    lora = table_row(results, "LoRA", "0.5%")
    assert lora[3].startswith("**80.5 ± 0.7") and lora[4].startswith("**70.5 ± 0.7")
    assert set(derived.metrics["metric"]) == {"f1", "accuracy"}


def test_methods_have_one_display_name_and_colour_in_every_figure(report, monkeypatch: pytest.MonkeyPatch) -> None:
    from methods import registry

    names = list(registry())
    assert len({plots.display_name(m) for m in names}) == len({plots.color(m) for m in names}) == len(names)
    drawn: dict[str, dict[str, object]] = {}

    def capture(figure, stem: Path) -> list[Path]:
        axes = figure.axes[0]
        legend = axes.get_legend()
        drawn[stem.name] = {
            "labels": [text.get_text() for text in legend.get_texts()],
            "colors": {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in axes.get_lines()}
            | {
                collection.get_label(): matplotlib.colors.to_hex(collection.get_facecolor()[0])
                for collection in axes.collections
                if collection.get_label()[:1] != "_"
            },
        }
        return []

    monkeypatch.setattr(plots, "_save", capture)
    cells = report.cells.assign(memory_isolated_mb_mean=[500.0 + i for i in range(len(report.cells))])
    plots.pareto_figure(cells, "t", "accuracy", Path("pareto"))
    plots.plateau_figure(report.runs, {}, "t", "accuracy", Path("plateau"))
    assert (
        "LoRA" in drawn["pareto"]["labels"]
        and "LoRA" in drawn["plateau"]["labels"]
        and "lora" not in drawn["plateau"]["labels"]
    )
    assert (
        drawn["pareto"]["colors"]["LoRA"]
        == drawn["plateau"]["colors"]["LoRA"]
        == matplotlib.colors.to_hex(plots.color("lora"))
    )
    assert "bands: min–max over 2 seeds" in drawn["plateau"]["labels"]


def test_decoder_tables_show_both_protocols_and_format_failures_per_test_set(report, tmp_path: Path) -> None:
    def edit(records: list[dict], manifest: dict) -> None:
        for record in records:
            better = 0.1 if record["config"]["method"] == "lora" else 0.0
            parts = {
                part: {
                    "accuracy": 0.5 + better + offset,
                    "format_failure_rate": 0.2 - better,
                    "loglik_accuracy": 0.6 + offset,
                }
                for part, offset in (("boolq", 0.0), ("piqa", 0.1))
            }
            average = {
                name: statistics.mean(values[name] for values in parts.values())
                for name in ("accuracy", "loglik_accuracy", "format_failure_rate")
            }
            test = {
                "average": average["accuracy"],
                "average_loglik": average["loglik_accuracy"],
                "average_format_failure_rate": average["format_failure_rate"],
            }
            record["metrics"]["test"] = test | {
                f"{part}/{name}": value for part, values in parts.items() for name, value in values.items()
            }
            record["metrics"]["validation"] = dict(record["metrics"]["test"])
            record["task"] |= {
                "name": "commonsense/all",
                "primary_metric": "average",
                "protocols": {"generation": "...", "loglikelihood": "..."},
            }
            record["config"]["task"] = "commonsense/all"

    derived = write_report(derived_store(report.folder.parent, tmp_path / "store", edit), log_to_wandb=False)
    main = derived.tables[0].markdown()
    generation, failures, loglik = (derived.tables[i].markdown() for i in (1, 2, 3))
    assert table_row(main, "Method", "Budget", "Trainable %")[3:] == [
        "all Gen acc avg",
        "all LL acc avg",
        "all Format fail % avg",
    ]
    # ‡: the tiny runs' test predictions are one class (tests/test_collapse.py); the values are what is checked here
    assert [text.rstrip("‡") for text in table_row(main, "LoRA", "0.5%")[3:]] == [
        "**65.0 ± 0.0 [65.0, 65.0]**",
        "**65.0 ± 0.0 [65.0, 65.0]**",
        "10.0 ± 0.0 [10.0, 10.0]",
    ]
    assert table_row(main, "Full FT", "100%")[4] == "**65.0 ± 0.0 [65.0, 65.0]**"  # both at the best LL accuracy
    for table in (generation, failures, loglik):  # the papers' layout: a column per test set, then the average
        assert table_row(table, "Method", "Budget") == ["Method", "Budget", "boolq", "piqa", "Avg"]
    assert table_row(generation, "LoRA", "0.5%")[2:] == [
        "**60.0 ± 0.0 [60.0, 60.0]**",
        "**70.0 ± 0.0 [70.0, 70.0]**",
        "**65.0 ± 0.0 [65.0, 65.0]**",
    ]
    published = table_row(generation, "*LoRA r32, llama-7b (DoRA paper Table 1 (LoRA from LLM-Adapters))*")
    assert published[2:] == ["*68.9*", "*80.7*", "*74.7*"]  # that paper's BoolQ and PIQA, and its 8-set average
    assert "other models and scales" in derived.tables[1].notes[0]
    assert table_row(failures, "LoRA", "0.5%")[2] == "10.0 ± 0.0 [10.0, 10.0]"
    assert "**" not in failures  # format-failure rates are never bold
    assert "llama-7b" not in failures + loglik  # published rows are generation accuracies


def test_variant_store_is_drawn_and_tabulated_and_curves_are_plotted(report, tmp_path: Path) -> None:
    def shifted(records: list[dict], manifest: dict) -> None:
        manifest["name"] = "fixed-recipe"
        for record in records:
            record["metrics"]["test"]["accuracy"] += 0.05 + 0.01 * record["config"]["seed"]  # a spread of its own

    def with_curves(records: list[dict], manifest: dict) -> None:
        for record in records:
            final = record["metrics"]["validation"]["accuracy"]
            before = final - 0.1 - 0.002 * record["config"]["seed"]
            record["curves"] = {"validation": [{"step": 1, "accuracy": before}, {"step": 2, "accuracy": final}]}

    variant = derived_store(report.folder.parent, tmp_path / "variant", shifted)
    store = derived_store(report.folder.parent, tmp_path / "store", with_curves)
    derived = write_report(store, log_to_wandb=False, variants=[(variant, None)])
    markdown = (derived.folder / "results.md").read_text()
    section = markdown[markdown.index("## Against fixed-recipe") :].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| minilm-l6")]
    assert len(rows) == len(derived.cells) and all(row.split("|")[-2].strip().startswith("+5.5 [") for row in rows)
    lora = [
        (100 * r["metrics"]["test"]["accuracy"], r["config"]["seed"])
        for r in read_records(store)
        if r["config"]["method"] == "lora"
    ]
    low, high = welch_interval([score for score, _ in lora], [score + 5 + seed for score, seed in lora])
    assert table_row(section, "minilm-l6", "glue/sst2", "LoRA")[-1] == f"+5.5 [{low:+.1f}, {high:+.1f}]"
    curves = markdown[markdown.index("## Validation during training") :].split("\n## ")[0]
    seeds = sorted({record["config"]["seed"] for record in read_records(store) if record["config"]["method"] == "lora"})
    gains = [10 + 0.2 * seed for seed in seeds]  # points gained over the last interval, per seed
    half = T_975[len(gains) - 1] * statistics.stdev(gains) / math.sqrt(len(gains))
    mean = statistics.mean(gains)
    assert table_row(curves, "LoRA")[-1] == f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}] rises"
    rule = markdown[markdown.index("## Convergence by rule") :].split("\n## ")[0]
    assert table_row(rule, "minilm-l6", "glue/sst2", "LoRA")[-1] == "fails"  # every seed gains 10 points at the end
    assert "minilm-l6 · glue/sst2: 2 of 2 cells fail the rule, 0 pass." in rule
    assert {path.name for path in derived.figures} >= {
        "curves_minilm-l6_glue-sst2.png",
        "plateau_minilm-l6_glue-sst2.png",
    }
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="variant store"):
        write_report(store, log_to_wandb=False, variants=[(tmp_path / "empty", None)])


def test_tuning_section_marks_choices_at_an_end_of_their_grid() -> None:
    from bench.report.write import _tuning_markdown

    def cell(budget: str, scores: dict[float, float]) -> dict:
        grid = [{"lr": lr, "run_key": "k", "status": "ok", "validation": score} for lr, score in scores.items()]
        chosen = max(scores, key=scores.get)
        return {"method": "lora", "model": "m", "task": "t", "budget": budget, "grid": grid, "chosen_lr": chosen}

    tuning = {
        "selection": "best validation",
        "interpolation": None,
        "tuning_seed": 0,
        "grid_size": 3,
        "cells": [
            cell("10k", {1e-4: 0.80, 3e-4: 0.85, 1e-3: 0.82}),  # inside
            cell("1M", {1e-4: 0.86, 3e-4: 0.85, 1e-3: 0.50}),  # the lowest rate
            cell("3M", {1e-4: 0.70, 3e-4: 0.75, 1e-3: 0.80}),  # the highest rate
        ],
    }
    markdown = _tuning_markdown(tuning)
    assert [row.split("|")[2].strip() for row in markdown.splitlines() if "(grid edge)" in row] == ["1M", "3M"]
    assert "2 of 3 tuned cells chose the lowest or highest learning rate" in markdown


def test_tuning_section_shows_each_tuning_seed_and_their_mean() -> None:
    from bench.report.write import _tuning_markdown

    runs = [{"seed": 0, "status": "ok", "validation": 0.9}, {"seed": 1, "status": "failed", "validation": None}]
    steady = [{"seed": 0, "status": "ok", "validation": 0.8}, {"seed": 1, "status": "ok", "validation": 0.7}]
    grid = [
        {"lr": 1e-3, "status": "failed", "validation": None, "runs": runs},
        {"lr": 3e-4, "status": "ok", "validation": 0.75, "runs": steady},
    ]
    entry = {"method": "lora", "model": "m", "task": "t", "budget": "1M", "grid": grid, "chosen_lr": 3e-4}
    tuning = {"selection": "best mean", "tuning_seeds": [0, 1], "grid_size": 2, "cells": [entry]}
    markdown = _tuning_markdown(tuning)
    assert "Tuning seeds 0, 1 (a rate's score is their mean; each seed's in brackets)" in markdown
    assert "0.001: failed (90.0, failed), 0.0003: 75.0 (80.0, 70.0)" in markdown
