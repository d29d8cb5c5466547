"""Train/test leakage guard: word n-gram overlap between every training set and every test set of a run.

Method: text is lower-cased, every run of characters other than a-z and 0-9 becomes a space, and each example is
reduced to its own content: the words not covered by a template 4-gram. Template 4-grams are those found in at least
5% (and at least 3) of the DISTINCT examples of the training or the test part: the instruction template ("please
answer the following question with true or false question ... answer format true false") and any boilerplate
recurring across examples; copies of one example count once, so duplicated examples never become template. The
content is cut into 13-grams (the GPT-3 decontamination length; numbers stay, so two problems with different numbers
do not match). Test content shorter than 13 words is looked for anywhere inside the training contents (a short
question planted in a longer text is found) when it has at least 5 words, and compared whole below that (a
two-word content such as "funny film" occurs inside countless longer texts without being a copy of any). A test
example is `contaminated` if it shares any content 13-gram with the training examples or its short content occurs
inside one, and a `near_duplicate` if at least half of its content 13-grams occur there (a short content found
inside a training text is one whole gram, so it is both). Only content is compared, so a 13-gram spanning the template and a common question stem ("... true or false
question is there a") matches nothing.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

NGRAM = 13
TEMPLATE_NGRAM = 4
TEMPLATE_FRACTION = 0.05
TEMPLATE_MIN_COUNT = 3
NEAR_DUPLICATE_SHARE = 0.5
EMBEDDED_MIN_WORDS = 5

log = logging.getLogger(__name__)
Gram = tuple[str, ...]


def words(text: str) -> tuple[str, ...]:
    return tuple(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def ngrams(sequence: tuple[str, ...], n: int = NGRAM) -> set[Gram]:
    """The word n-grams of a sequence; a sequence shorter than n is one gram."""
    if len(sequence) < n:
        return {sequence} if sequence else set()
    return {sequence[i : i + n] for i in range(len(sequence) - n + 1)}


def template_grams(texts: Iterable[tuple[str, ...]]) -> set[Gram]:
    """The 4-grams found in at least 5% (and at least 3) of the distinct texts."""
    distinct = set(texts)
    counts = Counter(gram for text in distinct for gram in ngrams(text, TEMPLATE_NGRAM))
    threshold = max(TEMPLATE_MIN_COUNT, TEMPLATE_FRACTION * len(distinct))
    return {gram for gram, count in counts.items() if count >= threshold}


def content(text: tuple[str, ...], template: set[Gram]) -> tuple[str, ...]:
    """The words of `text` that no template 4-gram covers."""
    covered = [False] * len(text)
    for start in range(len(text) - TEMPLATE_NGRAM + 1):
        if text[start : start + TEMPLATE_NGRAM] in template:
            covered[start : start + TEMPLATE_NGRAM] = [True] * TEMPLATE_NGRAM
    return tuple(word for word, is_template in zip(text, covered) if not is_template)


def embedded(short: Iterable[tuple[str, ...]], texts: Iterable[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """The sequences of `short` that occur as a contiguous run of words inside any of `texts`."""
    by_length: dict[int, set[tuple[str, ...]]] = {}
    for sequence in short:
        by_length.setdefault(len(sequence), set()).add(sequence)
    found = set()
    for text in texts:
        for length, wanted in by_length.items():
            found.update(text[i : i + length] for i in range(len(text) - length + 1) if text[i : i + length] in wanted)
    return found


def overlap(train_texts: Iterable[str], test_texts: Iterable[str]) -> dict[str, Any]:
    """How much of `test_texts` appears in `train_texts`: counts, fractions, and the first contaminated test indices."""
    train, test = [words(text) for text in train_texts], [words(text) for text in test_texts]
    template = template_grams(train) | template_grams(test)
    train_contents = {content(text, template) for text in set(train)}
    test_contents = [content(text, template) for text in test]
    seen = set().union(*(ngrams(text) for text in train_contents))
    seen |= embedded((text for text in test_contents if EMBEDDED_MIN_WORDS <= len(text) < NGRAM), train_contents)
    contaminated, near_duplicates = [], 0
    for index, text in enumerate(test_contents):
        grams = ngrams(text)
        shared = len(grams & seen)
        if shared:
            contaminated.append(index)
            near_duplicates += shared >= NEAR_DUPLICATE_SHARE * len(grams)
    total = len(test)
    return {
        "test_examples": total,
        "contaminated": len(contaminated),
        "contaminated_fraction": len(contaminated) / total if total else 0.0,
        "near_duplicates": near_duplicates,
        "near_duplicate_fraction": near_duplicates / total if total else 0.0,
        "first_contaminated": contaminated[:10],
    }


def leakage_report(task: Any, splits: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Overlap of the run's training data (train + held-out validation, per mix part) with each test set; warns on any."""
    train_parts: dict[str, list[str]] = {}
    for row in splits["train"] + splits.get("validation", []):
        train_parts.setdefault(row.get("subtask") or "train", []).append(task.leakage_text(row))
    test_parts: dict[str, list[str]] = {}
    for row in splits["test"]:
        test_parts.setdefault(row.get("subtask") or "test", []).append(task.leakage_text(row))
    pairs = {
        f"{train_name} -> {test_name}": overlap(train_texts, test_texts)
        for train_name, train_texts in train_parts.items()
        for test_name, test_texts in test_parts.items()
    }
    flagged = {pair: result["contaminated_fraction"] for pair, result in pairs.items() if result["contaminated"]}
    for pair, fraction in flagged.items():
        log.warning("leakage: %.1f%% of test examples share content with training data (%s)", 100 * fraction, pair)
    return {
        "method": f"word {NGRAM}-grams of each example's content (words outside template {TEMPLATE_NGRAM}-grams of distinct examples), shorter test contents of {EMBEDDED_MIN_WORDS}+ words found anywhere inside training contents, normalized text (tasks/leakage.py)",
        "flagged": flagged,
        "pairs": pairs,
    }
