"""SST-2's validation split: whole training sentences held out with their phrases dropped from training, so it looks
like the test set (sentence length, label share) and shares no phrase with training, checked by the leakage guard."""

from __future__ import annotations

import os
import random
import statistics
from pathlib import Path

import pytest

from tasks import get_task
from tasks.base import hold_out
from tasks.data_source import DataSource
from tasks.leakage import overlap
from tasks.phrases import hold_out_sentences


def test_held_out_sentences_are_maximal_and_their_phrases_leave_training():
    rows = [
        {"sentence": text, "label": label}
        for text, label in [
            ("a gorgeous , witty , seductive movie", 1),
            ("gorgeous , witty", 1),
            ("witty", 1),
            ("the plot is a mess", 0),
            ("a mess", 0),
            ("mess", 0),
            ("one of the year 's best films", 1),
            ("best films", 1),
            ("an ugly , pointless film", 0),
            ("pointless", 0),
            ("witty and pointless at once", 1),
        ]
    ]
    train, validation = hold_out_sentences(rows, 2, "sentence")
    assert len(validation) == 2
    held = [row["sentence"] for row in validation]
    everything = [row["sentence"] for row in rows]
    for sentence in held:  # no other row contains a held-out sentence
        assert not any(f" {sentence} " in f" {other} " for other in everything if other != sentence)
    for row in train:  # no training row occurs inside a held-out sentence
        assert not any(f" {row['sentence']} " in f" {sentence} " for sentence in held)
    assert len(train) + len(validation) < len(rows)  # phrases went with their sentences
    assert hold_out_sentences(rows, 2, "sentence") == (train, validation)


def test_a_sentence_that_is_part_of_another_row_is_never_held_out():
    rows = [{"sentence": f"good {index}", "label": 1} for index in range(10)]
    rows += [{"sentence": f"a really good {index} film", "label": 1} for index in range(10)]
    _, validation = hold_out_sentences(rows, 4, "sentence")
    assert all(row["sentence"].startswith("a really") for row in validation)


def phrase_leaks(train: list[dict], validation: list[dict]) -> int:
    """Training phrases (of 5+ words) found inside a validation sentence, by the leakage guard read the other way."""
    return overlap([row["sentence"] for row in validation], [row["sentence"] for row in train])["contaminated"]


def test_committed_sst2_validation_shares_no_phrase_with_training():
    task, source = get_task("glue/sst2"), DataSource()
    train, validation = task.load("train", source), task.load("validation", source)
    rows = task.read_train(source)
    random_train, random_validation = hold_out(rows, task.validation_size)
    assert phrase_leaks(train, validation) == 0
    assert phrase_leaks(random_train, random_validation) > 0


@pytest.mark.skipif(not os.environ.get("PEFT_BENCH_FULL_DATA"), reason="PEFT_BENCH_FULL_DATA is not set")
def test_full_sst2_validation_resembles_the_test_set():
    """On the full set the held-out sentences match the test sentences' length and label share (a random hold-out of
    phrases is half as long and 55 % positive), and the guard finds no training phrase inside them."""
    task, source = get_task("glue/sst2"), DataSource(Path(os.environ["PEFT_BENCH_FULL_DATA"]))
    train, validation, test = (task.load(split, source) for split in ("train", "validation", "test"))

    def words(part: list[dict]) -> float:
        return statistics.mean(len(row["sentence"].split()) for row in part)

    def positive(part: list[dict]) -> float:
        return statistics.mean(row["label"] for row in part)

    assert abs(words(validation) - words(test)) < 1.5 and abs(positive(validation) - positive(test)) < 0.03
    random_train, random_validation = hold_out(task.read_train(source), task.validation_size)
    assert words(random_validation) < 0.6 * words(test)
    assert phrase_leaks(train, validation) < 10
    assert phrase_leaks(random.Random(0).sample(random_train, 20000), random_validation) > 50
