"""The label prior of a training mix: entropies against scipy, supervised tokens against the tokenizer's own count
on the committed commonsense slices (the notebook that uses it: tests/test_notebook.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from scipy.stats import entropy

from tasks import get_task
from tasks.data_source import DataSource
from tasks.label_prior import label_prior


def test_entropies_and_loss_per_token_on_hand_counts() -> None:
    rows = [{"subtask": "yes-no", "answer": answer} for answer in ["true"] * 6 + ["false"] * 2]
    rows += [{"subtask": "four-way", "answer": f"answer{i}"} for i in (1, 2, 3, 4, 4, 4)]
    tokens = {"yes-no": 5, "four-way": 7}  # supervised tokens per row; -100 marks the rest
    prior = label_prior(rows, lambda row: {"labels": [-100] * 3 + [1] * tokens[row["subtask"]]})

    assert prior.counts["four-way"] == Counter({"answer4": 3, "answer1": 1, "answer2": 1, "answer3": 1})
    assert prior.rows == 14 and prior.supervised_tokens == 8 * 5 + 6 * 7
    assert prior.entropy("yes-no") == pytest.approx(entropy([6, 2]))
    assert prior.entropy("four-way") == pytest.approx(entropy([1, 1, 1, 3]))
    per_example = (8 * entropy([6, 2]) + 6 * entropy([1, 1, 1, 3])) / 14
    assert prior.nats_per_example == pytest.approx(per_example)
    assert prior.loss_per_token == pytest.approx(per_example * 14 / 82)


def test_supervised_tokens_are_the_answer_and_eos_of_each_row(smollm2) -> None:
    task = get_task("commonsense/all")
    rows = task.load("train", DataSource())
    prior = label_prior(rows, lambda row: task.encode(row, smollm2.tokenizer, 4096))
    tokenizer = smollm2.tokenizer
    assert prior.supervised_tokens == sum(
        len(tokenizer(row["output"], add_special_tokens=False)["input_ids"]) + 1 for row in rows
    )
    assert set(prior.counts) == {row["subtask"] for row in rows} and prior.rows == len(rows)
