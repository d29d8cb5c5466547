"""Tasks declared in YAML (`tasks/yaml/*.yaml`), one file per task; see tasks/README.md for the keys.

`style: glue` declares an encoder task over GLUE-layout files (tasks/glue.py); `style: instruction` declares a
decoder task over LLM-Adapters-format files, or over text-and-label files when `instruction` and `label_words`
turn each row into an instruction (tasks/instruction.py). Both styles get the same loading, errors and protocols as
the built-in tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.errors import BenchError
from tasks import metrics
from tasks.base import Task
from tasks.glue import GlueTask
from tasks.instruction import Benchmark, DataFile, FromLabeledText, InstructionTask, Mix, llm_adapters_row

YAML_DIR = Path(__file__).resolve().parent / "yaml"
METRICS = {
    "accuracy": metrics.accuracy,
    "f1": metrics.f1,
    "mcc": metrics.matthews_corrcoef,
    "pearson": metrics.pearson,
    "spearman": metrics.spearman,
}


def glue_task(spec: dict[str, Any]) -> GlueTask:
    unknown = [name for name in spec["metrics"] if name not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(METRICS)}")
    return GlueTask(
        name=spec["name"],
        directory=spec["directory"],
        hub_config=spec["hub_config"],
        text_fields=tuple(spec["text_fields"]),
        num_labels=int(spec["num_labels"]),
        metrics={name: METRICS[name] for name in spec["metrics"]},
        test_splits=tuple(spec.get("test_splits", ["validation"])),
    )


def instruction_task(spec: dict[str, Any]) -> InstructionTask:
    convert = (
        FromLabeledText(spec["instruction"], tuple(spec["label_words"])) if "instruction" in spec else llm_adapters_row
    )
    train = spec["train"]
    mix = Mix(
        train["name"],
        tuple(DataFile(path, train["name"], convert) for path in train["files"]),
        paper=bool(train.get("paper", False)),
        note=train.get("note", ""),
    )
    benchmarks = tuple(
        Benchmark(name, DataFile(path, name, convert), spec.get("answer_lead", "the correct answer is"))
        for name, path in spec["test"].items()
    )
    return InstructionTask(
        name=spec["name"],
        family=spec["family"],
        benchmarks=benchmarks,
        mixes=(mix,),
        max_new_tokens=int(spec.get("max_new_tokens", 32)),
    )


BUILDERS = {"glue": glue_task, "instruction": instruction_task}


def load_declared(folder: Path = YAML_DIR) -> list[Task]:
    """Every task declared in `folder`; BenchError naming the file for a malformed declaration."""
    tasks = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
            tasks.append(BUILDERS[spec["style"]](spec))
        except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise BenchError(
                f"task declaration {path} is malformed ({type(error).__name__}: {error})",
                f"fix it following tasks/README.md; styles: {sorted(BUILDERS)}",
            ) from None
    return tasks


TASKS = load_declared()
