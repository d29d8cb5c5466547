"""Answer extraction from generated text, after LLM-Adapters, with its fragile spots made explicit.

Rules (applied to the generated continuation only, never to the prompt, whose "Answer format: a/b" line lists
every label word):

- label words (BoolQ true/false, PIQA solution1/2, SIQA/ARC/OBQA answer1..5, HellaSwag ending1..4, WinoGrande
  option1/2, or any task's label list): the FIRST label word in the text, as in LLM-Adapters, but matched
  case-insensitively and as a whole word (LLM-Adapters is case-sensitive and would read `answer1` inside
  `answer12`).
- numbers (GSM8K, SVAMP, MAWPS, AddSub, MultiArith, SingleEq): the LAST number, correct within 1e-3, as in
  LLM-Adapters. Differences: a thousands comma is removed only between digit groups (`1,234` -> 1234; LLM-Adapters
  deletes every comma, so "3, 4" became 34), and a fraction `a/b` counts as its value (LLM-Adapters read `1/2`
  as 2).
- AQuA letters: LLM-Adapters takes the first capital A-E anywhere, so "According to ... (C)" reads A. Here the
  primary rule takes the option letter after the LAST answer cue ("answer is", "answer:", "option", "choice"),
  else the last parenthesized letter `(A)`..`(E)`. An option letter is one in parentheses or before ")" (`(c)`,
  `c)`, any case), a capital standing alone (`B`, `B.`), or a lowercase letter ending the clause (`is d`, `is: b.`);
  a lowercase letter before a word is English ("the answer is a total of 5"), never an option. The LLM-Adapters
  rule is also reported (`accuracy_first_capital`).

`None` means no parseable answer: a format failure, counted separately from a wrong answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|-?\d+\.?")
THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
ANSWER_CUE = r"(?i:answer\s*(?:is\b|:)|\boption\b|\bchoice\b)\s*:?\s*(?i:option\s+|choice\s+)?"
OPTION_LETTER = r"(?:\(([A-Ea-e])\)|([A-Ea-e])\)|([A-E])(?![A-Za-z0-9])|([a-e])(?=[ \t]*(?:[.,;:!?\n]|$)))"
ANSWER_LETTER = re.compile(ANSWER_CUE + OPTION_LETTER)
PARENTHESIZED_LETTER = re.compile(r"\(([A-E])\)")
NUMERIC_TOLERANCE = 1e-3


def first_label(text: str, labels: Sequence[str]) -> str | None:
    """The first of `labels` that occurs in `text` as a whole word (case-insensitive), as written in `labels`."""
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    match = re.search(rf"(?<![A-Za-z0-9])({alternatives})(?![A-Za-z0-9])", text, re.IGNORECASE)
    if match is None:
        return None
    found = match.group(1).lower()
    return next(label for label in labels if label.lower() == found)


def last_number(text: str) -> float | None:
    """The last number in `text` (thousands commas removed, `a/b` as a fraction); None if there is none."""
    matches = NUMBER.findall(THOUSANDS_COMMA.sub("", text))
    if not matches:
        return None
    token = matches[-1].rstrip(".")
    numerator, _, denominator = token.partition("/")
    if denominator:
        return float(numerator) / float(denominator) if float(denominator) else None
    return float(numerator)


def numbers_match(prediction: float | None, gold: float) -> bool:
    return prediction is not None and abs(prediction - gold) <= NUMERIC_TOLERANCE


def aqua_letter(text: str) -> str | None:
    """The chosen option letter: after the last answer cue, else the last "(X)"; None if neither appears."""
    cued = [next(letter for letter in groups if letter) for groups in ANSWER_LETTER.findall(text)]
    letters = cued or PARENTHESIZED_LETTER.findall(text)
    return letters[-1].upper() if letters else None


def first_capital_letter(text: str) -> str | None:
    """LLM-Adapters' AQuA rule: the first capital A-E anywhere in the text."""
    match = re.search(r"[A-E]", text)
    return match.group(0) if match else None
