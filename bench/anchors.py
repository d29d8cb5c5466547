"""Published numbers to show next to ours when the setting matches: same model and the same task set.

Scores are task-set averages in points, as printed in the sources (DoRA paper Tables 1 and 15, LoRA paper Table 2,
the SMT repository README, LIFT Tables 1-3). A report shows an anchor only when its model is the run's model and
the report's task columns are exactly the anchor's task set; otherwise it says that nothing matches.
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


@dataclass(frozen=True)
class Anchor:
    model: str
    task_set: str
    method: str
    trainable: str
    score: float
    source: str


def _rows(model: str, task_set: str, source: str, *entries: tuple[str, str, float]) -> list[Anchor]:
    return [Anchor(model, task_set, method, trainable, score, source) for method, trainable, score in entries]


ANCHORS: list[Anchor] = [
    *_rows(
        "llama-7b",
        "commonsense-8",
        "DoRA paper Table 1 (LoRA from LLM-Adapters)",
        ("LoRA r32", "0.83%", 74.7),
        ("DoRA (half rank) r16", "0.43%", 77.5),
        ("DoRA r32", "0.84%", 78.4),
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
    *_rows("llama3-8b", "commonsense-8", "SMT repository README", ("SMT", "0.71%", 86.8)),
    *_rows("llama3-8b", "math-6", "SMT repository README", ("SMT", "0.71%", 66.1)),
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


def matching(model: str, tasks: set[str]) -> tuple[str | None, list[Anchor]]:
    """The task set that `tasks` forms, and the anchors for (`model`, that set)."""
    task_set = next((name for name, forms in TASK_SETS.items() if frozenset(tasks) in forms), None)
    return task_set, [anchor for anchor in ANCHORS if anchor.model == model and anchor.task_set == task_set]
