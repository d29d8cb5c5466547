"""A test-like validation split for phrase-level training sets (SST-2): whole sentences held out, their phrases
removed from training.

SST-2's training file holds every sentiment-bearing phrase of the parse trees of its training sentences (67,349 rows,
9 words on average), while its test set (GLUE validation) holds whole sentences (19.5 words, 50.9 % positive) whose
phrases are in no training row. A random hold-out of the training rows is mostly short phrases (55 % positive) whose
sentences stay in training, so it ranks learning rates on an easier, leaked task. This split instead holds out whole
sentences: rows that no other row contains (on the full set they average 19.3 words, 51.1 % positive), chosen by a
fixed permutation, and drops from training every row that occurs inside a held-out sentence, as SST's own split
keeps a sentence's phrases on its side. Text is compared as whitespace-separated tokens.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from tasks.base import HOLDOUT_SEED

Row = dict[str, Any]


def _padded(text: str) -> str:
    return f" {' '.join(text.split())} "


@lru_cache(maxsize=4)
def _sentence_split(texts: tuple[str, ...], size: int) -> tuple[frozenset[int], frozenset[int]]:
    """(held-out indices, dropped indices) of `texts`; cached because every split of a run asks again."""
    padded = [_padded(text) for text in texts]
    distinct = sorted(set(padded), key=lambda text: -len(text.split()))
    corpus = "\n".join(distinct)
    longer_end: dict[int, int] = {}  # words -> end of the corpus part holding only texts with more words
    offset = 0
    for text in distinct:
        longer_end.setdefault(len(text.split()), offset)
        offset += len(text) + 1
    order = list(range(len(texts)))
    random.Random(HOLDOUT_SEED).shuffle(order)
    held: list[int] = []
    for index in order:
        if len(held) == size:
            break
        words = len(padded[index].split())
        if words and corpus.find(padded[index], 0, longer_end[words]) == -1:
            held.append(index)
    held_text = "\n".join(padded[index] for index in held)
    dropped = frozenset(index for index, text in enumerate(padded) if text in held_text) - set(held)
    return frozenset(held), dropped


def hold_out_sentences(rows: list[Row], size: int, field: str) -> tuple[list[Row], list[Row]]:
    """(train, validation): `size` whole sentences of `rows[i][field]` (at most a fifth of the rows) held out, and every
    row occurring inside one of them dropped from training."""
    held, dropped = _sentence_split(tuple(row[field] for row in rows), min(size, len(rows) // 5))
    train = [row for index, row in enumerate(rows) if index not in held and index not in dropped]
    return train, [rows[index] for index in sorted(held)]
