"""Answer extraction on a table of tricky model outputs (pure functions, no model)."""

from __future__ import annotations

import pytest

from tasks.extraction import aqua_letter, first_capital_letter, first_label, last_number, numbers_match

ARC_LABELS = ["answer1", "answer2", "answer3", "answer4"]


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("the correct answer is true", ["true", "false"], "true"),
        ("False. It is not true that ...", ["true", "false"], "false"),  # first label word wins, case-insensitive
        ("the correct answer is answer3 (not answer1)", ARC_LABELS, "answer3"),
        ("answer12 is not an option; answer2 is", ARC_LABELS, "answer2"),  # whole words only
        ("I cannot decide.", ["true", "false"], None),  # no label word: a format failure
        ("", ["option1", "option2"], None),
        ("ending4.", ["ending1", "ending2", "ending3", "ending4"], "ending4"),
        ("Solution2 is better", ["solution1", "solution2"], "solution2"),
    ],
)
def test_first_label(text, labels, expected):
    assert first_label(text, labels) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 576.", 576.0),
        ("She had -3 degrees, then 5 more: the answer is -3 + 5 = 2", 2.0),
        ("The temperature is -12.", -12.0),  # negative number
        ("It costs $1,234,567 in total", 1234567.0),  # thousands commas
        ("The numbers are 3, 4", 4.0),  # a list comma is not a thousands comma
        ("He runs 2.5 miles", 2.5),
        ("Half of it: 1/2", 0.5),  # fraction
        ("3/0 is undefined", None),
        ("The answer is 42.\n", 42.0),
        ("no digits here", None),
        ("12 apples and 7 pears, so 19.0", 19.0),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_numeric_tolerance():
    assert numbers_match(1.8334, 1.8333333333333335)
    assert not numbers_match(1.835, 1.8333333333333335)
    assert not numbers_match(None, 0.0)


# Realistic AQuA generations: (text, the letter the model chose, what LLM-Adapters' first-capital rule reads). Where the
# reference rule is right, the two agree; the robust rule never reads an article or a word as an option.
AQUA_OUTPUTS = [
    ("The answer is (C).", "C", "C"),
    ("the answer is C) 24", "C", "C"),
    ("Answer: B", "B", "A"),
    ("The answer is a) 12", "A", None),
    ("so the answer is: E", "E", "E"),
    ("the answer is d", "D", None),
    ("the answer is (b) 36 km/hr", "B", None),
    ("The answer is a total of 5 apples, so (D)", "D", "D"),  # "a total": an article, not option A
    ("The answer is a number between 3 and 4.", None, None),
    ("Answer Choices: (A) 5 (B) 6 (C) 7 (D) 8 (E) 9\nThe answer is (C) 7", "C", "A"),  # the options repeated first
    ("Speed = 45 * 5/18 = 25/2 m/sec. Time = 30 sec. The answer is E", "E", "E"),
    ("According to the rationale, the answer is (C).", "C", "A"),  # LLM-Adapters' rule reads the A of "According"
    ("Options (A) and (B) are too small. The answer is D", "D", "A"),
    ("Between (B) and (E), I pick (E)", "E", "B"),
    ("The answer is: b", "B", None),
    ("Both Alice and Bob ...", None, "B"),  # no option marker: a format failure for the robust rule
    ("the answer is (e) because", "E", None),
    ("The correct answer is option B.", "B", "B"),
    ("The answer is B because 12 + 12 = 24", "B", "B"),
]


@pytest.mark.parametrize(("text", "chosen", "first_capital"), AQUA_OUTPUTS)
def test_aqua_letter(text, chosen, first_capital):
    assert aqua_letter(text) == chosen
    assert first_capital_letter(text) == first_capital


def test_single_task_scores_pool_parts_and_group_scores_average_them():
    """A single task validated on a multi-part mix still reports its primary metric; a group averages parts unweighted,
    each protocol over the parts it scores."""
    from tasks.instruction import _group_metrics, _scores

    def answered(part, answer, extracted, loglik, standard=None):
        record = {"subtask": part, "answer": answer, "correct": extracted == answer, "extracted": extracted}
        record |= {"output": "", "loglik_choice": loglik[0], "loglik_choice_norm": loglik[1]}
        return record | ({"standard_choice": standard[0], "standard_choice_norm": standard[1]} if standard else {})

    records = [
        answered("a", "true", "true", ("true", "true")),
        answered("a", "false", None, ("true", "false")),
        answered("b", "answer1", "answer1", ("answer1", "answer1"), ("answer1", "answer2")),
        answered("b", "answer2", "answer1", ("answer1", "answer1"), ("answer2", "answer2")),
    ]
    pooled = _scores(records)
    assert pooled == {
        "accuracy": 2 / 4,
        "format_failure_rate": 1 / 4,
        "loglik_accuracy": 2 / 4,
        "loglik_accuracy_norm": 3 / 4,
        "loglik_accuracy_standard": 1.0,
        "loglik_accuracy_norm_standard": 0.5,
    }  # no standard error pooled over parts
    per_part = {part: _scores([r for r in records if r["subtask"] == part]) for part in ("a", "b")}
    assert per_part["b"]["loglik_accuracy_standard_stderr"] == 0.0
    assert per_part["b"]["loglik_accuracy_norm_standard_stderr"] == 0.5
    group = _group_metrics(per_part)
    assert group["average"] == 0.5 and group["average_loglik"] == 0.5 and group["a/format_failure_rate"] == 0.5
    assert (
        group["average_loglik_standard"] == 1.0 and "a/loglik_accuracy_standard" not in group
    )  # part a has no formulation
