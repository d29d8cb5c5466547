"""The leakage guard on real data: LLM-Adapters' math training data overlaps the MAWPS-derived test sets; a shared
instruction template or question stem is no leakage; copies of a test example in a small training part are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks import get_task
from tasks.data_source import DataSource
from tasks.instruction import DataFile, read_file
from tasks.leakage import content, leakage_report, overlap, template_grams, words

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
    assert (
        overlap(
            ["Please choose the correct answer to the question: a b c d e f g h i j k l m"],
            ["Please choose the correct answer to the question: a b c d e f g h i j k l m"],
        )["contaminated"]
        == 1
    )


def test_run_report_flags_offline_math_mix(caplog):
    """The offline mix (GSM8K + MAWPS train) leaks into AddSub/MultiArith/SingleEq; the run's report says so."""
    task, source = get_task("arithmetic/all"), DataSource()
    splits = {split: task.load(split, source) for split in ("train", "validation", "test")}
    report = leakage_report(task, splits)
    for name in LEAKY:
        assert report["pairs"][f"mawps-train -> {name}"]["contaminated"] > 0
        assert f"mawps-train -> {name}" in report["flagged"]
    assert report["pairs"]["gsm8k-train -> aqua"]["contaminated"] == 0
    assert "share content with training data" in caplog.text


def boolq(source: DataSource, split: str) -> list[str]:
    return instructions(source, f"commonsense/boolq/{split}.json")


def test_copies_of_test_examples_in_a_small_training_part_are_flagged():
    """Copies of one example reach any within-part frequency threshold; they are leakage all the same."""
    source = DataSource()
    train, test = boolq(source, "train")[:20], boolq(source, "test")
    result = overlap(train + [test[0]] * 3 + [test[7]] * 2, test)
    assert result["contaminated"] == 2 and result["first_contaminated"] == [0, 7], result
    assert result["near_duplicates"] == 2
    assert overlap(train + [test[3]] * 4, test[:10])["first_contaminated"] == [3]


def test_shared_template_and_question_stems_are_not_leakage_on_slices():
    """BoolQ train and test share the instruction template and stems ("question: is there a ..."), not questions."""
    source = DataSource()
    train, test = boolq(source, "train"), boolq(source, "test")
    assert not set(train) & set(test)
    assert overlap(train, test)["contaminated"] == 0


@pytest.mark.parametrize("name", ["commonsense/boolq", "commonsense/piqa", "glue/sst2", "glue/cola"])
def test_short_test_items_planted_inside_longer_training_texts_are_flagged(name):
    """Up to eight test items of 6-12 content words (no 13-gram of their own), each pasted into the middle of a longer
    training text, are all flagged; the same training set without the pastes flags none of them."""
    task, source = get_task(name), DataSource()
    train = [task.leakage_text(row) for row in task.load("train", source)]
    test = [task.leakage_text(row) for row in task.load("test", source)]
    template = template_grams(map(words, train)) | template_grams(map(words, test))
    short = [text for text in test if 6 <= len(content(words(text), template)) < 13][:12]
    short = [text for text in short if not overlap(train, [text])["contaminated"]][:8]  # CoLA has real leaks
    assert len(short) >= 4
    hosts = [host.split() for host in train[: len(short)]]
    pasted = [" ".join([*host[: len(host) // 2], text, *host[len(host) // 2 :]]) for host, text in zip(hosts, short)]
    assert overlap(train, short)["contaminated"] == 0
    assert overlap(train + pasted, short)["contaminated"] == len(short)


def test_short_content_is_found_inside_a_longer_text_from_five_words_on():
    """A five-word content inside a longer training text is flagged; a four-word one only as a whole copy."""
    train = ["the committee finally decided that the old bridge would be rebuilt next spring after all"]
    assert overlap(train, ["old bridge would be rebuilt"])["contaminated"] == 1
    assert overlap(train, ["bridge would be rebuilt"])["contaminated"] == 0
    assert overlap([*train, "bridge would be rebuilt"], ["bridge would be rebuilt"])["contaminated"] == 1


def full_data() -> DataSource:
    return DataSource(Path(os.environ["PEFT_BENCH_FULL_DATA"]))


full_data_only = pytest.mark.skipif(
    not os.environ.get("PEFT_BENCH_FULL_DATA"), reason="PEFT_BENCH_FULL_DATA (the full data root) is not set"
)


@full_data_only
def test_full_boolq_train_does_not_leak_into_boolq_test():
    """On the full sets (9,427 train, 3,270 test, no question in both) the template and stems flagged 44 %; what is left
    (42, 1.3 %) are the same questions asked again: with another first verb ("does/can the xbox 1 play xbox 360
    games", 14 of them) or inside a longer training question ("was cape fear based on a true story" in ... "was the
    movie cape fear ...", "ground beef and minced beef the same" + "thing")."""
    source = full_data()
    train, test = boolq(source, "train"), boolq(source, "test")
    assert not set(train) & set(test)
    assert overlap(train, test)["contaminated_fraction"] < 0.015


@full_data_only
def test_full_boolq_train_with_copied_test_questions_is_flagged():
    source = full_data()
    train, test = boolq(source, "train"), boolq(source, "test")
    copied = [5, 100, 300]
    alone, with_copies = overlap(train, test), overlap(train + [test[i] for i in copied for _ in range(3)], test)
    assert with_copies["contaminated"] == alone["contaminated"] + len(copied)
    assert set(copied) <= set(with_copies["first_contaminated"]) and not set(copied) & set(alone["first_contaminated"])


@full_data_only
def test_full_math_data_overlap():
    source = full_data()
    train = instructions(source, "math/math_data/math_data.json")
    for name in LEAKY:
        test = [row["instruction"] for row in get_task(f"arithmetic/{name}").load("test", source)]
        assert overlap(train, test)["contaminated_fraction"] > 0.8, name
