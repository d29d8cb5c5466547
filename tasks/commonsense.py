"""Commonsense reasoning (LLM-Adapters / DoRA / SMT protocol): eight test sets in the LLM-Adapters format.

`commonsense/<name>` scores one set, `commonsense/all` all eight plus their average; both train on the same mix:
LLM-Adapters' `commonsense_170k` when the data root has it (download `ft-training_set/commonsense_170k.json` from
AGI-Edgerunners/LLM-Adapters to `commonsense/commonsense_170k/commonsense_170k.json`), else
`offline-commonsense-boolq-arc-obqa` (the BoolQ, ARC-Easy, ARC-Challenge and OpenBookQA train sets, which are
real and public, but NOT the papers' training set: PIQA, SIQA, HellaSwag and WinoGrande have no training data in it).
Generation gets 32 new tokens, as in LLM-Adapters. These tasks run all three protocols (tasks/instruction.py), the
primary metric being generation's.

`commonsense-standard/<name>` and `commonsense-standard/all` are the same sets scored by lm-eval's standard
formulations alone (tasks/formulations.py), its primary metric `loglik_accuracy_standard` (`average_loglik_standard`): a
log-likelihood pass, cheap enough for full test sets, e.g. `bench eval <run>.json --task commonsense-standard/all`.
BoolQ is not among them: lm-eval's prompt for it needs the passage, which the local BoolQ rows lack. Its
validation split scores the mix's parts that have a formulation (the ARC and OpenBookQA train files of the offline
mix); LLM-Adapters' `commonsense_170k` interleaves the sets without naming them, so it cannot be used there.
"""

from __future__ import annotations

from tasks import formulations
from tasks.instruction import Benchmark, DataFile, Mix, TaskFamily

FOLDERS = {  # data folder -> lm-eval's standard formulation of its set
    "boolq": None,
    "piqa": formulations.PIQA,
    "social_i_qa": formulations.SIQA,
    "hellaswag": formulations.HELLASWAG,
    "winogrande": formulations.WINOGRANDE,
    "ARC-Easy": formulations.ARC_EASY,
    "ARC-Challenge": formulations.ARC_CHALLENGE,
    "openbookqa": formulations.OPENBOOKQA,
}

BENCHMARKS = tuple(
    Benchmark(
        name,
        DataFile(f"commonsense/{folder}/test.json", name, answer_kind="label", standard=FOLDERS[folder]),
    )
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
        DataFile(f"commonsense/{folder}/train.json", f"{folder}-train", answer_kind="label", standard=FOLDERS[folder])
        for folder in ("boolq", "ARC-Easy", "ARC-Challenge", "openbookqa")
    ),
    paper=False,
    note="BoolQ + ARC-Easy + ARC-Challenge + OpenBookQA train sets in the LLM-Adapters format; NOT commonsense_170k, scores are not comparable to the papers",
)

COMMONSENSE = TaskFamily(
    family="commonsense",
    benchmarks=BENCHMARKS,
    mixes=(COMMONSENSE_170K, OFFLINE_COMMONSENSE),
    max_new_tokens=32,
    protocols=("generation", "label-words", "standard"),
)
COMMONSENSE_STANDARD = TaskFamily(
    family="commonsense-standard",
    benchmarks=tuple(benchmark for benchmark in BENCHMARKS if benchmark.file.standard is not None),
    mixes=(COMMONSENSE_170K, OFFLINE_COMMONSENSE),
    max_new_tokens=32,
    protocols=("standard",),
)
TASKS = COMMONSENSE.tasks + COMMONSENSE_STANDARD.tasks
