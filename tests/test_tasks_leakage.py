"""The leakage guard on real data: LLM-Adapters' math training data overlaps the MAWPS-derived test sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks import get_task
from tasks.data_source import DataSource
from tasks.instruction import DataFile, read_file
from tasks.leakage import leakage_report, overlap

LEAKY = ("addsub", "multiarith", "singleeq")


def instructions(source: DataSource, relative: str) -> list[str]:
    return [row["instruction"] for row in read_file(source, DataFile(relative, "x"))]


def test_committed_math_data_slice_is_caught():
    source = DataSource()
    train = instructions(source, "math/math_data/math_data.json")
    for name in LEAKY:
        test = [row["instruction"] for row in get_task(f"arithmetic/{name}").load("test", source)]
        result = overlap(train, test)
        assert result["contaminated"] >= 20, (name, result)
    clean = overlap(train, [row["instruction"] for row in get_task("commonsense/boolq").load("test", source)])
    assert clean["contaminated"] == 0


def test_template_text_alone_is_not_leakage():
    """ARC train and test share the instruction boilerplate, not questions: almost nothing may be flagged."""
    source = DataSource()
    train = instructions(source, "commonsense/ARC-Easy/train.json")
    test = [row["instruction"] for row in get_task("commonsense/arc-c").load("test", source)]
    assert overlap(train, test)["contaminated_fraction"] < 0.05
    assert overlap(["Please choose the correct answer to the question: a b c d e f g h i j k l m"], ["Please choose the correct answer to the question: a b c d e f g h i j k l m"])["contaminated"] == 1


def test_run_report_flags_offline_math_mix(caplog):
    """The offline mix (GSM8K + MAWPS train) leaks into AddSub/MultiArith/SingleEq; the run's report says so."""
    task, source = get_task("arithmetic/all"), DataSource()
    splits = {split: task.load(split, source) for split in ("train", "validation", "test")}
    report = leakage_report(task, splits)
    for name in LEAKY:
        assert report["pairs"][f"mawps-train -> {name}"]["contaminated"] > 0
        assert f"mawps-train -> {name}" in report["flagged"]
    assert report["pairs"]["gsm8k-train -> aqua"]["contaminated"] == 0
    assert "share a 13-gram" in caplog.text


@pytest.mark.skipif(not os.environ.get("PEFT_BENCH_FULL_DATA"), reason="PEFT_BENCH_FULL_DATA (the full data root) is not set")
def test_full_math_data_overlap():
    source = DataSource(Path(os.environ["PEFT_BENCH_FULL_DATA"]))
    train = instructions(source, "math/math_data/math_data.json")
    for name in LEAKY:
        test = [row["instruction"] for row in get_task(f"arithmetic/{name}").load("test", source)]
        assert overlap(train, test)["contaminated_fraction"] > 0.8, name
