"""Collapsed predictions: counted by hand on written prediction rows, and found by `bench report` in copies of the
tiny store whose predictions are rewritten (one class throughout, with the constant predictor's score from sklearn; a
two-set decoder group, whose report also gives the majority answer and the protocols' agreement)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from bench.records.collapse import NO_ANSWER, Collapse, majority_shares, run_collapses
from bench.report import plots
from bench.report.write import write_report
from tests.test_report import derived_store, report, table_row  # noqa: F401 (report: the module's fixture)


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_a_set_collapses_when_one_answer_covers_95_percent_of_its_test_predictions(tmp_path: Path) -> None:
    classifier = [{"split": "test", "index": i, "label": int(i < 12), "prediction": int(i != 0)} for i in range(20)]
    validation = [{"split": "validation", "index": i, "label": 0, "prediction": 0} for i in range(40)]
    (found,) = run_collapses(write_rows(tmp_path / "glue.jsonl", classifier + validation))
    # 19 of 20 test predictions are 1 (validation rows are not counted); 12 of the 20 labels are 1
    assert found == Collapse(test_set="", protocol="classifier", answer="1", share=0.95, constant_score=0.6)
    assert run_collapses(write_rows(tmp_path / "glue18.jsonl", classifier[2:] + classifier[:1] * 3)) == []  # 17 of 21

    # regression: labels 0, 0.25, ..., 4.75 (population std 1.44); 19 predictions at 3.0 and one at 3.5
    regression = [{"split": "test", "index": i, "label": i / 4, "prediction": 3.0 + (i == 0) / 2} for i in range(20)]
    (constant,) = run_collapses(write_rows(tmp_path / "stsb.jsonl", regression))
    assert constant.protocol == "regression" and constant.answer == "3" and constant.share == 0.95
    assert math.isnan(constant.constant_score)  # a constant has no correlation with the labels
    # within 5 % of that std (0.072) of the median counts as the same value: 3.05 does, 3.1 does not
    assert run_collapses(
        write_rows(tmp_path / "near.jsonl", [row | {"prediction": 3.05} for row in regression[:1]] + regression[1:])
    )
    wider = [row | {"prediction": 3.1} for row in regression[:2]] + regression[2:]
    assert run_collapses(write_rows(tmp_path / "wide.jsonl", wider)) == []  # 18 of 20 near 3.0
    tracking = [row | {"prediction": row["label"]} for row in regression]
    assert run_collapses(write_rows(tmp_path / "good.jsonl", tracking)) == []
    validation = [row | {"split": "validation"} for row in regression]
    assert run_collapses(write_rows(tmp_path / "val.jsonl", validation + tracking)) == []  # test rows only
    (on_validation,) = run_collapses(tmp_path / "val.jsonl", split="validation")
    assert on_validation == constant

    decoder = [
        {"split": "test", "index": i, "subtask": "winogrande", "answer": f"option{1 + i % 2}", "extracted": "option2"}
        | {"loglik_choice": f"option{1 + i % 2}"}
        for i in range(10)
    ] + [
        {"split": "test", "index": i, "subtask": "gsm8k", "answer": "18", "extracted": None if i > 10 else 18.0}
        for i in range(10, 30)
    ]
    assert run_collapses(write_rows(tmp_path / "decoder.jsonl", decoder)) == [
        Collapse(test_set="gsm8k", protocol="generation", answer=NO_ANSWER, share=0.95, constant_score=0.0),
        Collapse(test_set="winogrande", protocol="generation", answer="option2", share=1.0, constant_score=0.5),
    ]  # the log-likelihood choices alternate: not collapsed; 18.0 extracted matches the gold "18" as a number
    # the best constant answer: 12 of 20 labels are 1; winogrande's gold alternates; gsm8k has one gold number here
    assert majority_shares(tmp_path / "glue.jsonl") == {"": 0.6}
    assert majority_shares(tmp_path / "decoder.jsonl") == {"gsm8k": 1.0, "winogrande": 0.5}
    assert majority_shares(tmp_path / "stsb.jsonl") == {}  # real-valued labels have no majority answer
    many = [
        {"split": "test", "index": i, "subtask": "gsm8k", "answer": str(i % 6), "extracted": None} for i in range(12)
    ]
    assert majority_shares(write_rows(tmp_path / "numbers.jsonl", many)) == {}  # 6 distinct numbers: not a choice


def test_report_lists_and_marks_a_collapsed_cell_with_the_constant_predictors_score(
    report,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    labels: list[int] = []
    seeds: list[int] = []

    def edit(records: list[dict], manifest: dict) -> None:
        seeds.append(sum(r["config"]["method"] == "full" for r in records))
        for record in records:  # full fine-tuning now answers 1 to every test sentence, LoRA gets every one right
            predictions = tmp_path / "store" / f"{record['run_key']}.predictions.jsonl"
            rows = [json.loads(line) for line in predictions.read_text().splitlines()]
            labels[:] = [row["label"] for row in rows if row["split"] == "test"]
            full = record["config"]["method"] == "full"
            answer = (lambda row: 1) if full else (lambda row: row["label"])
            write_rows(
                predictions, [row | {"prediction": answer(row)} if row["split"] == "test" else row for row in rows]
            )
            record["metrics"]["test"]["accuracy"] = accuracy_score(labels, [1] * len(labels)) if full else 1.0

    store = derived_store(report.folder.parent, tmp_path / "store", edit)
    figures = majority_lines(monkeypatch)
    derived = write_report(store, log_to_wandb=False)
    markdown = derived.markdown_path.read_text()
    section = markdown.split("## Collapsed predictions", 1)[1].split("\n## ", 1)[0]
    row = table_row(section, "minilm-l6", "glue/sst2", "sst2", "Full FT")
    constant = 100 * accuracy_score(labels, [1] * len(labels))
    assert row[4:] == ["all", "classifier", f"{seeds[0]} of {seeds[0]}", "1", "100.0", f"{constant:.1f}"]
    assert "LoRA" not in section and len(pd.read_csv(derived.folder / "collapses.csv")) == 1
    results = derived.tables[0].markdown()
    assert table_row(results, "Full FT", "100%")[3].endswith("‡")
    assert not table_row(results, "LoRA", "0.5%")[3].endswith("‡")
    assert "1 cell and test-set pair(s)" in markdown
    majority = 100 * max(labels.count(1), labels.count(0)) / len(labels)
    assert figures["plateau_minilm-l6_glue-sst2"] == [majority]


def majority_lines(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[float]]:
    """Patches the figure writer: per figure stem, the heights of its "Majority answer" lines."""
    drawn: dict[str, list[float]] = {}

    def capture(figure, stem: Path) -> list[Path]:
        lines = [line for line in figure.axes[0].get_lines() if line.get_label().startswith("Majority answer")]
        drawn[stem.name] = [line.get_ydata()[0] for line in lines]
        return []

    monkeypatch.setattr(plots, "_save", capture)
    return drawn


def test_decoder_report_marks_collapsed_sets_and_shows_the_majority_answer_and_protocol_agreement(
    report,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gold = {"boolq": ["true"] * 7 + ["false"] * 3, "piqa": ["solution1", "solution2"] * 5}

    def edit(records: list[dict], manifest: dict) -> None:
        for record in records:  # every run becomes a two-set commonsense run; LoRA answers "true" to all of BoolQ
            lora = record["config"]["method"] == "lora"
            rows = [
                {"split": "test", "index": f"{part}-{i}", "subtask": part, "answer": answer, "extracted": extracted}
                | {"correct": extracted == answer, "loglik_choice": answer}
                for part, answers in gold.items()
                for i, answer in enumerate(answers)
                for extracted in ["true" if lora and part == "boolq" else answer if i % 2 else None]
            ]
            write_rows(tmp_path / "store" / f"{record['run_key']}.predictions.jsonl", rows)
            parts = {part: {"accuracy": sum(r["correct"] for r in rows if r["subtask"] == part) / 10} for part in gold}
            record["metrics"]["test"] = {f"{part}/accuracy": v["accuracy"] for part, v in parts.items()} | {
                "average": sum(v["accuracy"] for v in parts.values()) / 2,
                "average_loglik": 1.0,
            }
            record["metrics"]["validation"] = dict(record["metrics"]["test"])
            record["task"] |= {"name": "commonsense/all", "primary_metric": "average"}
            record["config"]["task"] = "commonsense/all"

    store = derived_store(report.folder.parent, tmp_path / "store", edit)
    figures = majority_lines(monkeypatch)
    derived = write_report(store, log_to_wandb=False)
    (table,) = [t for t in derived.tables if t.name.endswith("-accuracy")]
    markdown = table.markdown()
    assert table_row(markdown, "*Majority answer*", "*–*")[2:] == ["*70.0*", "*50.0*", "*60.0*"]
    assert figures["plateau_minilm-l6_commonsense-all"] == [60.0]  # the plateau figure's floor is the table's Avg
    boolq, piqa = table_row(markdown, "LoRA", "0.5%")[2:4]
    assert boolq.endswith("‡") and not piqa.endswith("‡")  # BoolQ always "true" (70.0); PIQA half right, half blank
    assert not table_row(markdown, "Full FT", "100%")[2].endswith("‡")  # half its answers are missing, half right
    # the log-likelihood choice is always the gold answer: the same answer as generation on LoRA's 7 BoolQ "true"
    # and 5 PIQA answers, and on full fine-tuning's 5 + 5 answers, per seed
    runs = derived.runs.groupby("method")["key"].count()
    same = (12 * runs["lora"] + 10 * runs["full"]) / (20 * runs.sum())
    agreement = derived.markdown_path.read_text().split("## Protocol agreement", 1)[1]
    row = table_row(agreement, "minilm-l6", "commonsense/all")
    assert row[2:] == ["2", "–", "–", str(20 * runs.sum()), f"{100 * same:.1f}"]  # log-likelihood ranks nothing apart
    # a run whose predictions file is gone is left out of the per-example checks, not a crash
    (derived.folder.parent / f"{derived.runs['key'].iloc[0]}.predictions.jsonl").unlink()
    again = write_report(derived.folder.parent, log_to_wandb=False).markdown_path.read_text()
    assert table_row(again.split("## Protocol agreement", 1)[1], "minilm-l6", "commonsense/all")[5] == str(
        20 * runs.sum() - 20
    )


def test_a_majority_far_from_the_scores_stays_off_the_axis_and_is_named_in_the_legend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = pd.DataFrame(
        {
            "method": ["lora"] * 4,
            "budget": ["10k", "10k", "100k", "100k"],
            "params": [10_000, 10_000, 100_000, 100_000],
            "score": [85.0, 86.0, 87.0, 88.0],
        }
    )
    drawn: dict[str, tuple[list[str], tuple[float, float]]] = {}

    def capture(figure, stem: Path) -> list[Path]:
        axes = figure.axes[0]
        drawn[stem.name] = ([line.get_label() for line in axes.get_lines()], axes.get_ylim())
        return []

    monkeypatch.setattr(plots, "_save", capture)
    plots.plateau_figure(runs, {}, "far", "accuracy", Path("far"), majority=50.9)
    plots.plateau_figure(runs, {}, "near", "accuracy", Path("near"), majority=84.0)
    labels, (low, high) = drawn["far"]
    assert "Majority answer (50.9, off the axis)" in labels and 50.9 < low < 85.0 and high > 88.0
    labels, (low, high) = drawn["near"]
    assert "Majority answer" in labels and low <= 84.0


def test_a_variants_full_fine_tuning_line_is_in_its_own_panel_and_unlike_the_majority_line(monkeypatch) -> None:
    runs = pd.DataFrame(
        {"method": ["lora", "lora"], "budget": ["10k", "100k"], "params": [10_000, 100_000], "score": [85.0, 87.0]}
    )
    variant = pd.DataFrame(
        {"method": ["full", "lora"], "budget": ["all", "10k"], "params": [22_000_000, 10_000], "score": [86.0, 80.0]}
    )
    panels: list[dict[str, object]] = []

    def capture(figure, stem: Path) -> list[Path]:
        panels.extend({line.get_label(): line.get_linestyle() for line in axes.get_lines()} for axes in figure.axes)
        return []

    monkeypatch.setattr(plots, "_save", capture)
    others = [plots.Panel(variant, title="paper")]
    plots.plateau_figure(runs, {}, "t", "accuracy", Path("t"), majority=84.0, others=others)
    ours, theirs = panels
    assert "Full FT (mean)" not in ours and "Full FT (mean)" in theirs
    assert theirs["Full FT (mean)"] != theirs["Majority answer"]
