"""Published numbers to show next to ours when the setting matches: same model and the same task set.

Scores are task-set averages in points, as printed in the sources (DoRA paper Tables 1 and 15, LoRA paper Table 2,
the SMT repository README, LIFT Tables 1-3), with the per-set scores where the source prints them. A report's main
table shows an anchor only when its model is the run's model and the report's task columns are exactly the anchor's
task set; otherwise it says that nothing matches. The per-set tables of decoder groups show the per-set anchors of
any model, labelled as another model and scale.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMONSENSE = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc-e", "arc-c", "obqa")
TASK_SETS: dict[str, tuple[frozenset[str], ...]] = {
    "commonsense-8": (frozenset({"commonsense/all"}), frozenset(f"commonsense/{name}" for name in COMMONSENSE)),
    "math-6": (
        frozenset(f"arithmetic/{name}" for name in ("gsm8k", "singleeq", "svamp", "multiarith", "addsub", "aqua")),
    ),
    "math-7": (
        frozenset({"arithmetic/all"}),
        frozenset(
            f"arithmetic/{name}" for name in ("gsm8k", "singleeq", "svamp", "multiarith", "addsub", "aqua", "mawps")
        ),
    ),
    "glue-8": (frozenset(f"glue/{name}" for name in ("mnli", "sst2", "mrpc", "cola", "qnli", "qqp", "rte", "stsb")),),
}


PER_SET = {  # the order of the per-set scores an anchor may carry (`Anchor.per_set`)
    "commonsense-8": COMMONSENSE,
    "math-6": ("gsm8k", "singleeq", "svamp", "multiarith", "addsub", "aqua"),
}


@dataclass(frozen=True)
class Anchor:
    model: str
    task_set: str
    method: str
    trainable: str
    score: float
    source: str
    per_set: tuple[float, ...] = ()  # scores per test set, in PER_SET[task_set] order, where the source prints them


def _rows(model: str, task_set: str, source: str, *entries: tuple[str, str, float]) -> list[Anchor]:
    return [Anchor(model, task_set, method, trainable, score, source) for method, trainable, score in entries]


def _per_set(model: str, task_set: str, source: str, method: str, trainable: str, *scores: float) -> Anchor:
    """An anchor printed per test set: the scores in PER_SET[task_set] order, then the average."""
    *per_set, average = scores
    return Anchor(model, task_set, method, trainable, average, source, tuple(per_set))


ANCHORS: list[Anchor] = [
    _per_set(
        "llama-7b",
        "commonsense-8",
        "DoRA paper Table 1 (LoRA from LLM-Adapters)",
        "LoRA r32",
        "0.83%",
        *(68.9, 80.7, 77.4, 78.1, 78.8, 77.8, 61.3, 74.8, 74.7),
    ),
    _per_set(
        "llama-7b",
        "commonsense-8",
        "DoRA paper Table 1 (LoRA from LLM-Adapters)",
        "DoRA (half rank) r16",
        "0.43%",
        *(70.0, 82.6, 79.7, 83.2, 80.6, 80.6, 65.4, 77.6, 77.5),
    ),
    _per_set(
        "llama-7b",
        "commonsense-8",
        "DoRA paper Table 1 (LoRA from LLM-Adapters)",
        "DoRA r32",
        "0.84%",
        *(69.7, 83.4, 78.6, 87.2, 81.0, 81.9, 66.2, 79.2, 78.4),
    ),
    *_rows(
        "llama-7b",
        "commonsense-8",
        "DoRA paper Table 15",
        ("LoRA r4", "0.10%", 39.49),
        ("LoRA r8", "0.21%", 40.74),
        ("LoRA r16", "0.42%", 70.9),
        ("LoRA r64", "1.64%", 65.8),
        ("DoRA r4", "0.11%", 61.89),
        ("DoRA r8", "0.22%", 77.96),
        ("DoRA r16", "0.43%", 77.5),
        ("DoRA r64", "1.65%", 72.1),
    ),
    *_rows(
        "llama2-7b",
        "commonsense-8",
        "DoRA paper Table 1",
        ("LoRA", "0.83%", 77.6),
        ("DoRA (half rank)", "0.43%", 80.5),
        ("DoRA", "0.84%", 79.7),
    ),
    *_rows(
        "llama3-8b",
        "commonsense-8",
        "DoRA paper Table 1",
        ("LoRA", "0.70%", 80.8),
        ("DoRA (half rank)", "0.35%", 85.0),
        ("DoRA", "0.71%", 85.2),
    ),
    _per_set(
        "llama3-8b",
        "commonsense-8",
        "SMT repository README",
        "SMT",
        "0.71%",
        *(75.7, 88.4, 81.4, 96.2, 88.2, 92.7, 83.2, 88.6, 86.8),
    ),
    _per_set(
        "llama3-8b", "math-6", "SMT repository README", "SMT", "0.71%", *(42.8, 88.5, 60.4, 93.9, 85.8, 25.2, 66.1)
    ),
    *_rows("roberta-base", "glue-8", "LoRA paper Table 2", ("Full FT", "100%", 86.4), ("LoRA (q,v r8)", "0.3M", 87.2)),
    *_rows(
        "roberta-large",
        "glue-8",
        "LoRA paper Table 2",
        ("Full FT", "100%", 88.9),
        ("LoRA", "0.8M", 89.0),
        ("LoRA (max length 128)", "0.8M", 88.6),
    ),
    *_rows(
        "llama2-7b",
        "commonsense-8",
        "LIFT Table 1 (third party)",
        ("Full FT", "100%", 83.53),
        ("LoRA r128", "", 81.25),
        ("DoRA r128", "", 81.80),
    ),
    *_rows(
        "llama3-8b",
        "commonsense-8",
        "LIFT Table 1 (third party)",
        ("Full FT", "100%", 86.64),
        ("LoRA r64", "", 83.46),
        ("DoRA r64", "", 85.04),
    ),
    *_rows(
        "llama2-7b",
        "math-7",
        "LIFT Table 2 (third party)",
        ("Full FT", "100%", 72.79),
        ("LoRA", "", 72.93),
        ("DoRA", "", 72.42),
    ),
    *_rows(
        "llama3-8b",
        "math-7",
        "LIFT Table 2 (third party)",
        ("Full FT", "100%", 80.18),
        ("LoRA", "", 79.44),
        ("DoRA", "", 79.92),
    ),
    *_rows(
        "deberta-v3-base",
        "glue-8",
        "LIFT Table 3 (third party)",
        ("Full FT", "100%", 88.36),
        ("LoRA r64", "", 87.57),
        ("DoRA r64", "", 87.66),
    ),
]


def task_set_of(tasks: set[str]) -> str | None:
    """The task set that `tasks` form (None: none of TASK_SETS)."""
    return next((name for name, forms in TASK_SETS.items() if frozenset(tasks) in forms), None)


def matching(model: str, tasks: set[str]) -> tuple[str | None, list[Anchor]]:
    """The task set that `tasks` forms, and the anchors for (`model`, that set)."""
    task_set = task_set_of(tasks)
    return task_set, [anchor for anchor in ANCHORS if anchor.model == model and anchor.task_set == task_set]


def per_set_anchors(test_sets: list[str]) -> list[Anchor]:
    """Anchors printed per test set whose sets overlap `test_sets` (short names such as "boolq"), any model."""
    return [anchor for anchor in ANCHORS if anchor.per_set and set(PER_SET[anchor.task_set]) & set(test_sets)]
