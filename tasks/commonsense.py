"""Commonsense reasoning (LLM-Adapters / DoRA / SMT protocol): eight test sets in the LLM-Adapters format.

`commonsense/<name>` scores one set, `commonsense/all` all eight plus their average; both train on the same mix:
LLM-Adapters' `commonsense_170k` when the data root has it (download `ft-training_set/commonsense_170k.json` from
AGI-Edgerunners/LLM-Adapters to `commonsense/commonsense_170k/commonsense_170k.json`), else
`offline-commonsense-boolq-arc-obqa` (the BoolQ, ARC-Easy, ARC-Challenge and OpenBookQA train sets, which are
real and public, but NOT the papers' training set: PIQA, SIQA, HellaSwag and WinoGrande have no training data in it).
Generation gets 32 new tokens, as in LLM-Adapters.
"""

from __future__ import annotations

from tasks.instruction import Benchmark, DataFile, Mix, TaskFamily

BENCHMARKS = tuple(
    Benchmark(name, DataFile(f"commonsense/{folder}/test.json", name, answer_kind="label"))
    for name, folder in (
        ("boolq", "boolq"),
        ("piqa", "piqa"),
        ("siqa", "social_i_qa"),
        ("hellaswag", "hellaswag"),
        ("winogrande", "winogrande"),
        ("arc-e", "ARC-Easy"),
        ("arc-c", "ARC-Challenge"),
        ("obqa", "openbookqa"),
    )
)

COMMONSENSE_170K = Mix(
    "commonsense_170k",
    (DataFile("commonsense/commonsense_170k/commonsense_170k.json", "commonsense_170k", answer_kind="label"),),
    paper=True,
    note="LLM-Adapters' commonsense_170k (the training set of the LLM-Adapters, DoRA and SMT tables)",
)
OFFLINE_COMMONSENSE = Mix(
    "offline-commonsense-boolq-arc-obqa",
    tuple(
        DataFile(f"commonsense/{folder}/train.json", f"{folder}-train", answer_kind="label")
        for folder in ("boolq", "ARC-Easy", "ARC-Challenge", "openbookqa")
    ),
    paper=False,
    note="BoolQ + ARC-Easy + ARC-Challenge + OpenBookQA train sets in the LLM-Adapters format; NOT commonsense_170k, scores are not comparable to the papers",
)

COMMONSENSE = TaskFamily(
    family="commonsense", benchmarks=BENCHMARKS, mixes=(COMMONSENSE_170K, OFFLINE_COMMONSENSE), max_new_tokens=32
)
TASKS = COMMONSENSE.tasks
