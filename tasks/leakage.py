"""Train/test leakage guard: word n-gram overlap between every training set and every test set of a run.

Method: text is lower-cased, every run of characters other than a-z and 0-9 becomes a space, and the words are cut
into 13-grams (the GPT-3 decontamination length; numbers stay, so two problems with different numbers do not
match). N-grams found in at least 5% of a set's examples (and at least 3 of them) are template text ("Please
choose the correct answer to the question ... Answer format: ...") and are ignored. A test example is
`contaminated` if it shares any remaining 13-gram with the training examples, and a `near_duplicate` if at least
half of its 13-grams occur there. Texts shorter than 13 words are compared whole.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

NGRAM = 13
TEMPLATE_FRACTION = 0.05
TEMPLATE_MIN_COUNT = 3
NEAR_DUPLICATE_SHARE = 0.5

log = logging.getLogger(__name__)


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = re.sub(r"[^0-9a-z]+", " ", text.lower()).split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _template_ngrams(grams_per_example: list[set[tuple[str, ...]]]) -> set[tuple[str, ...]]:
    counts = Counter(gram for grams in grams_per_example for gram in grams)
    threshold = max(TEMPLATE_MIN_COUNT, TEMPLATE_FRACTION * len(grams_per_example))
    return {gram for gram, count in counts.items() if count >= threshold}


def overlap(train_texts: Iterable[str], test_texts: Iterable[str]) -> dict[str, Any]:
    """How much of `test_texts` appears in `train_texts`: counts, fractions, and the first contaminated test indices."""
    train = [ngrams(text) for text in train_texts]
    test = [ngrams(text) for text in test_texts]
    template = _template_ngrams(train) | _template_ngrams(test)
    seen = set().union(*train) - template if train else set()
    contaminated, near_duplicates = [], 0
    for index, grams in enumerate(test):
        grams = grams - template
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
    pairs = {f"{train_name} -> {test_name}": overlap(train_texts, test_texts) for train_name, train_texts in train_parts.items() for test_name, test_texts in test_parts.items()}
    flagged = {pair: result["contaminated_fraction"] for pair, result in pairs.items() if result["contaminated"]}
    for pair, fraction in flagged.items():
        log.warning("leakage: %.1f%% of test examples share a %d-gram with training data (%s)", 100 * fraction, NGRAM, pair)
    return {"method": f"word {NGRAM}-grams on normalized text, template n-grams removed (tasks/leakage.py)", "flagged": flagged, "pairs": pairs}
