"""Arithmetic reasoning (LLM-Adapters protocol): seven test sets in the LLM-Adapters format.

`arithmetic/<name>` scores one set, `arithmetic/all` all seven plus their average; both train on the same mix:
LLM-Adapters' `math_10k` when the data root has it (download `ft-training_set/math_10k.json` from
AGI-Edgerunners/LLM-Adapters to `math/math_10k/math_10k.json`), else `offline-math-gsm8k-mawps` (the OpenAI GSM8K
train set and the MAWPS train set, worked answers ending in "The answer is N."; NOT math_10k). Both mixes contain
MAWPS problems, which AddSub, MultiArith and SingleEq are built from: the leakage guard reports that overlap.
Scored on `answer` only (GSM8K's `output` holds a rationale). Generation gets 256 new tokens, as in LLM-Adapters.
"""

from __future__ import annotations

from tasks.instruction import Benchmark, DataFile, Mix, TaskFamily, gsm8k_original_row, mawps_original_row

BENCHMARKS = tuple(
    Benchmark(name, DataFile(f"math/{folder}/test.json", name, answer_kind=kind), answer_lead="The answer is")
    for name, folder, kind in (
        ("gsm8k", "gsm8k", "number"),
        ("svamp", "SVAMP", "number"),
        ("aqua", "AQuA", "letter"),
        ("mawps", "mawps", "number"),
        ("addsub", "AddSub", "number"),
        ("multiarith", "MultiArith", "number"),
        ("singleeq", "SingleEq", "number"),
    )
)

MATH_10K = Mix(
    "math_10k",
    (DataFile("math/math_10k/math_10k.json", "math_10k"),),
    paper=True,
    note="LLM-Adapters' math_10k (contains MAWPS training items: AddSub/MultiArith/SingleEq leak, as its README says)",
)
OFFLINE_MATH = Mix(
    "offline-math-gsm8k-mawps",
    (
        DataFile("math/gsm8k_original/train.jsonl", "gsm8k-train", convert=gsm8k_original_row, answer_kind="number"),
        DataFile("math/mawps/trainset.json", "mawps-train", convert=mawps_original_row, answer_kind="number"),
    ),
    paper=False,
    note="OpenAI GSM8K train + MAWPS train, converted to the LLM-Adapters format; NOT math_10k, scores are not comparable to the papers",
)

ARITHMETIC = TaskFamily(family="arithmetic", benchmarks=BENCHMARKS, mixes=(MATH_10K, OFFLINE_MATH), max_new_tokens=256)
TASKS = ARITHMETIC.tasks
