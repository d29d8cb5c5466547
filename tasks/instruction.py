"""Decoder tasks in the LLM-Adapters format: instruction in, "the correct answer is X" (or a worked answer) out.

A task is a list of benchmarks (test sets) plus an ordered list of training mixes. Training uses the first mix whose
files are all in the data root (the papers' own mix when the user has it, else a clearly named offline mix); the
record says which. A group task (`commonsense/all`) trains once on the mix and is scored on every benchmark,
reporting each and their unweighted average, as the papers do; a single task trains on the same mix and is scored on
one benchmark.

Every row is normalised to `instruction`, `input`, `output`, `answer`, `answer_kind` (label / number / letter) and
`subtask` (the benchmark or mix part it came from). Two evaluation protocols run on every checkpoint:

(a) generation: the pinned prompt (tasks/prompts.py), batched greedy decoding (tasks/generation.py) and answer
    extraction (tasks/extraction.py); `accuracy`, and `format_failure_rate` (outputs with no parseable answer).
(b) log-likelihood: lm-eval multiple choice over the same prompt + the answer lead ("the correct answer is") with the
    row's label words (or the letters A-E) as choices (tasks/lm_eval_bridge.py); `loglik_accuracy`,
    `loglik_accuracy_norm`. Open numeric answers have no choice set, so (b) does not apply to them (recorded so).
In a distributed run (a) is split across the processes and gathered; (b) runs in full on every process (lm-eval is
handed the in-memory model, which it scores as one process).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from core.errors import BenchError
from tasks import extraction
from tasks.base import EvalResult, Task, across_ranks
from tasks.data_source import DataSource
from tasks.lm_eval_bridge import ChoiceItem, score_multiple_choice
from tasks.prompts import BOS_POLICY, TEMPLATE_HASH, build_prompt, encode_for_training

if TYPE_CHECKING:
    from torch import nn

AnswerKind = Literal["label", "number", "letter"]
Converter = Callable[[dict[str, Any]], dict[str, Any]]
LETTERS = ("A", "B", "C", "D", "E")
ANSWER_FORMAT = re.compile(r"Answer format:\s*([A-Za-z0-9]+(?:/[A-Za-z0-9]+)+)")


def llm_adapters_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row already in the LLM-Adapters format (`instruction`, `input`, `output`, `answer`)."""
    return {
        "instruction": row["instruction"],
        "input": row.get("input") or "",
        "output": row.get("output") or "",
        "answer": str(row["answer"]).strip(),
    }


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4f}".rstrip("0")


def gsm8k_original_row(row: dict[str, Any]) -> dict[str, Any]:
    """OpenAI GSM8K (`question`, `answer` = rationale with <<calc>> notes + `#### N`) as an LLM-Adapters row."""
    rationale, marker, final = row["answer"].rpartition("####")
    if not marker:
        raise ValueError("the answer has no '#### <number>' line")
    final = final.strip().replace(",", "")
    float(final)
    steps = re.sub(r"<<[^>]*>>", "", rationale).strip()
    return {"instruction": row["question"], "input": "", "output": f"{steps}\nThe answer is {final}.", "answer": final}


def mawps_original_row(row: dict[str, Any]) -> dict[str, Any]:
    """MAWPS (`original_text`, `equation` "X=(...)", `ans`) as an LLM-Adapters row with the equation as the rationale."""
    answer = format_number(float(row["ans"]))
    expression = str(row["equation"]).removeprefix("X=").removeprefix("x=")
    return {
        "instruction": row["original_text"].strip(),
        "input": "",
        "output": f"{expression} = {answer}\nThe answer is {answer}.",
        "answer": answer,
    }


@dataclass(frozen=True)
class FromLabeledText:
    """Rows with text fields and an integer `label` (GLUE style) as LLM-Adapters rows: the instruction is a template
    over the fields ending in "Answer format: a/b", the answer the label's word."""

    instruction: str
    label_words: tuple[str, ...]

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        label = row["label"]
        if not isinstance(label, int) or isinstance(label, bool) or label not in range(len(self.label_words)):
            raise ValueError(f"unknown label {label!r}, expected 0..{len(self.label_words) - 1}")
        word = self.label_words[label]
        return {
            "instruction": self.instruction.format(**row),
            "input": "",
            "output": f"the correct answer is {word}",
            "answer": word,
        }


@dataclass(frozen=True)
class DataFile:
    """One file of a benchmark or mix: its path in the data root, how its rows convert, and the answers' kind."""

    path: str
    part: str
    convert: Converter = llm_adapters_row
    answer_kind: AnswerKind | None = None  # None: per row (a letter A-E, a number, else a label word)


@dataclass(frozen=True)
class Mix:
    """A named training mix. `paper` marks the papers' own sets; offline substitutes have different names."""

    name: str
    files: tuple[DataFile, ...]
    paper: bool
    note: str


@dataclass(frozen=True)
class Benchmark:
    """One test set, scored with the extraction rule of its answer kind."""

    name: str
    file: DataFile
    answer_lead: str = "the correct answer is"


def _answer_kind(answer: str) -> AnswerKind:
    if answer in LETTERS:
        return "letter"
    try:
        float(answer)
    except ValueError:
        return "label"
    return "number"


def row_labels(row: dict[str, Any]) -> list[str]:
    """The label words a row may be answered with, read from its "Answer format: a/b/..." line."""
    match = ANSWER_FORMAT.search(row["instruction"])
    return match.group(1).split("/") if match else []


def read_file(source: DataSource, file: DataFile) -> list[dict[str, Any]]:
    """Normalised rows of `file`; BenchError naming the file and row on a malformed row or unknown answer."""
    rows = []
    for index, raw in enumerate(source.read_records(file.path), start=1):
        where = f"{source.root / file.path}, row {index}"
        try:
            row = file.convert(raw)
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            raise BenchError(
                f"{where}: malformed row ({type(error).__name__}: {error})", "repair or remove that row"
            ) from None
        kind = file.answer_kind or _answer_kind(row["answer"])
        if kind == "label":
            labels = row_labels(row)
            if not labels:
                raise BenchError(
                    f"{where}: no 'Answer format: a/b' line in the instruction",
                    "label-word rows must list their labels as LLM-Adapters does",
                )
            if row["answer"] not in labels:
                raise BenchError(f"{where}: unknown label {row['answer']!r}", f"the row's labels are {labels}")
        elif kind == "letter" and row["answer"] not in LETTERS:
            raise BenchError(f"{where}: unknown label {row['answer']!r}", "AQuA-style answers are one of A, B, C, D, E")
        elif kind == "number" and _answer_kind(row["answer"]) != "number":
            raise BenchError(
                f"{where}: unknown label {row['answer']!r} (not a number)", "numeric tasks need a number as the answer"
            )
        rows.append({**row, "answer_kind": kind, "subtask": file.part})
    return rows


@dataclass(kw_only=True)
class InstructionTask(Task):
    """Fine-tune on a mix, score on one or more benchmarks with both protocols."""

    name: str
    family: str
    benchmarks: tuple[Benchmark, ...]
    mixes: tuple[Mix, ...]
    max_new_tokens: int
    mask_prompt: bool = True
    model_kind: str = "causal-lm"
    validation_size: int = 200
    description: str = ""

    @property
    def primary_metric(self) -> str:
        return "average" if len(self.benchmarks) > 1 else "accuracy"

    def train_mix(self, source: DataSource) -> Mix:
        """The first mix whose files are all in the data root."""
        for mix in self.mixes:
            if all(source.has(file.path) for file in mix.files):
                return mix
        wanted = "; ".join(f"{mix.name}: {', '.join(file.path for file in mix.files)}" for mix in self.mixes)
        raise BenchError(
            f"no training mix of {self.name} is complete in {source.root} ({source.kind})",
            f"provide one of [{wanted}] in the data root",
        )

    def read_train(self, source: DataSource) -> list[dict[str, Any]]:
        return [row for file in self.train_mix(source).files for row in read_file(source, file)]

    def read_test(self, source: DataSource) -> list[dict[str, Any]]:
        return [row for benchmark in self.benchmarks for row in read_file(source, benchmark.file)]

    def leakage_text(self, row: dict[str, Any]) -> str:
        return f"{row['instruction']} {row['input']}".strip()

    def encode(self, example: dict[str, Any], tokenizer: Any, max_length: int) -> dict[str, Any]:
        return encode_for_training(
            build_prompt(example["instruction"], example["input"]),
            example["output"],
            tokenizer,
            max_length,
            self.mask_prompt,
        )

    def describe(self, source: DataSource) -> dict[str, Any]:
        mix = self.train_mix(source)
        return {
            "benchmarks": [benchmark.name for benchmark in self.benchmarks],
            "train_mix": {
                "name": mix.name,
                "paper_set": mix.paper,
                "note": mix.note,
                "files": [file.path for file in mix.files],
            },
            "template_sha256": TEMPLATE_HASH,
            "prompt_masked": self.mask_prompt,
            "bos": BOS_POLICY,
            "protocols": {
                "generation": f"greedy, continuous batching with left padding (equal to one-at-a-time), max_new_tokens={self.max_new_tokens}, extraction rules of tasks/extraction.py",
                "loglikelihood": "lm-eval multiple_choice over the label words / letters A-E (acc, acc_norm); not applicable to open numeric answers",
            },
        }

    def evaluate(
        self,
        model: nn.Module,
        tokenizer: Any,
        examples: list[dict[str, Any]],
        batch_size: int,
        max_length: int,
        progress: bool = False,
    ) -> EvalResult:
        from tasks.generation import generate

        prompts = [build_prompt(row["instruction"], row["input"]) for row in examples]
        outputs = across_ranks(
            prompts,
            partial(
                generate, model, tokenizer, max_new_tokens=self.max_new_tokens, batch_size=batch_size, progress=progress
            ),
        )  # greedy decoding is batch-invariant: the same answers as one process
        records = [
            {"index": i, "subtask": row["subtask"], "answer": row["answer"], "output": text, **judge(row, text)}
            for i, (row, text) in enumerate(zip(examples, outputs))
        ]
        choice_rows = {
            part: [i for i, row in enumerate(examples) if row["subtask"] == part and row["answer_kind"] != "number"]
            for part in _parts(examples)
        }
        items = {
            part: [choice_item(examples[i], self._lead(examples[i])) for i in indices]
            for part, indices in choice_rows.items()
            if indices
        }
        scored = score_multiple_choice(model, tokenizer, items, batch_size, progress=progress) if items else {}
        for part, indices in choice_rows.items():
            for i, chosen in zip(indices, scored.get(part, {}).get("choices", [])):
                records[i]["loglik_choice"] = _choices(examples[i])[chosen]
        per_part = {
            part: _scores([r for r in records if r["subtask"] == part], {part: scored[part]} if part in scored else {})
            for part in _parts(examples)
        }
        if len(self.benchmarks) > 1:
            metrics = _group_metrics(per_part)
        else:
            metrics = _scores(records, scored) | (
                {f"{part}/{name}": value for part, values in per_part.items() for name, value in values.items()}
                if len(per_part) > 1
                else {}
            )
        return EvalResult(metrics=metrics, predictions=records)

    def _lead(self, row: dict[str, Any]) -> str:
        benchmark = next((b for b in self.benchmarks if b.name == row["subtask"]), None)
        return (
            benchmark.answer_lead
            if benchmark
            else ("The answer is" if row["answer_kind"] == "letter" else "the correct answer is")
        )


def _parts(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(row["subtask"] for row in rows))


def _choices(row: dict[str, Any]) -> list[str]:
    return list(LETTERS) if row["answer_kind"] == "letter" else row_labels(row)


def choice_item(row: dict[str, Any], lead: str) -> ChoiceItem:
    choices = _choices(row)
    return ChoiceItem(
        context=build_prompt(row["instruction"], row["input"]) + lead,
        choices=choices,
        gold=choices.index(row["answer"]),
    )


def judge(row: dict[str, Any], text: str) -> dict[str, Any]:
    """The extracted answer of one generated text and whether it is correct."""
    if row["answer_kind"] == "number":
        value = extraction.last_number(text)
        return {"extracted": value, "correct": extraction.numbers_match(value, float(row["answer"]))}
    if row["answer_kind"] == "letter":
        letter, first = extraction.aqua_letter(text), extraction.first_capital_letter(text)
        return {
            "extracted": letter,
            "correct": letter == row["answer"],
            "extracted_first_capital": first,
            "correct_first_capital": first == row["answer"],
        }
    label = extraction.first_label(text, row_labels(row))
    return {"extracted": label, "correct": label == row["answer"]}


def _scores(records: list[dict[str, Any]], scored: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Both protocols' metrics over `records`; `scored` holds lm-eval's results of the parts they come from."""
    count = len(records)
    scores = {
        "accuracy": sum(r["correct"] for r in records) / count,
        "format_failure_rate": sum(r["extracted"] is None for r in records) / count,
    }
    with_choices = [r for r in records if "loglik_choice" in r]
    if with_choices:
        scores["loglik_accuracy"] = sum(r["loglik_choice"] == r["answer"] for r in with_choices) / len(with_choices)
        scores["loglik_accuracy_norm"] = sum(part["acc_norm"] * len(part["choices"]) for part in scored.values()) / len(
            with_choices
        )
        if len(scored) == 1 and (stderr := next(iter(scored.values())).get("acc_stderr")) is not None:
            scores["loglik_accuracy_stderr"] = (
                stderr  # lm-eval's own, for one test set (parts are pooled by mean, not here)
            )
    if any("correct_first_capital" in r for r in records):
        scores["accuracy_first_capital"] = sum(r.get("correct_first_capital", False) for r in records) / count
    return scores


def _group_metrics(per_part: dict[str, dict[str, float]]) -> dict[str, float]:
    """The paper-style group report: unweighted averages over parts, then `<part>/<metric>` for each part."""
    averages = {}
    for name, average in (
        ("accuracy", "average"),
        ("loglik_accuracy", "average_loglik"),
        ("format_failure_rate", "average_format_failure_rate"),
    ):
        values = [values[name] for values in per_part.values() if name in values]
        if values:
            averages[average] = sum(values) / len(values)
    return averages | {f"{part}/{name}": value for part, values in per_part.items() for name, value in values.items()}


@dataclass(kw_only=True)
class TaskFamily:
    """The benchmarks and mixes of one family, from which its single tasks and its `all` group are built."""

    family: str
    benchmarks: tuple[Benchmark, ...]
    mixes: tuple[Mix, ...]
    max_new_tokens: int
    tasks: list[InstructionTask] = field(init=False)

    def __post_init__(self) -> None:
        common = {"family": self.family, "mixes": self.mixes, "max_new_tokens": self.max_new_tokens}
        singles = [
            InstructionTask(name=f"{self.family}/{benchmark.name}", benchmarks=(benchmark,), **common)
            for benchmark in self.benchmarks
        ]
        self.tasks = [*singles, InstructionTask(name=f"{self.family}/all", benchmarks=self.benchmarks, **common)]
