"""Decoder tasks in the LLM-Adapters format: instruction in, "the correct answer is X" (or a worked answer) out.

A task is a list of benchmarks (test sets) plus an ordered list of training mixes. Training uses the first mix whose
files are all in the data root (the papers' own mix when the user has it, else a clearly named offline mix); the
record says which. A group task (`commonsense/all`) trains once on the mix and is scored on every benchmark,
reporting each and their unweighted average, as the papers do; a single task trains on the same mix and is scored on
one benchmark.

Every row is normalised to `instruction`, `input`, `output`, `answer`, `answer_kind` (label / number / letter) and
`subtask` (the benchmark or mix part it came from). A task runs the evaluation protocols it declares (`protocols`;
the first gives its primary metric) on every checkpoint:

- "generation": the pinned prompt (tasks/prompts.py), batched greedy decoding (tasks/generation.py) and answer
  extraction (tasks/extraction.py); `accuracy`, and `format_failure_rate` (outputs with no parseable answer).
- "label-words": lm-eval multiple choice over the same prompt + the answer lead ("the correct answer is") with the
  row's label words (or the letters A-E) as choices (tasks/lm_eval_bridge.py); `loglik_accuracy`,
  `loglik_accuracy_norm`. Open numeric answers have no choice set, so it does not apply to them (recorded so).
- "standard": lm-eval's standard formulation of the row's set (tasks/formulations.py: lm-eval's own prompt and
  answer-text choices), declared per data file; `loglik_accuracy_standard`, `loglik_accuracy_norm_standard` and
  their standard errors. Rows of a file without one (BoolQ, arithmetic, LLM-Adapters' mixed training file) are not
  scored by it.
Each example's answer by each protocol goes to its prediction record (`extracted`, `loglik_choice`,
`standard_choice`, and the `_norm` choices), with `correct` by the primary protocol. In a distributed run every
protocol is split across the processes and gathered.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from core.errors import BenchError
from tasks import extraction
from tasks.base import EvalResult, Task, across_ranks
from tasks.data_source import DataSource
from tasks.formulations import Formulation
from tasks.lm_eval_bridge import ChoiceItem, score_multiple_choice
from tasks.prompts import BOS_POLICY, TEMPLATE_HASH, build_prompt, encode_for_training

if TYPE_CHECKING:
    from torch import nn

AnswerKind = Literal["label", "number", "letter"]
Protocol = Literal["generation", "label-words", "standard"]
# each protocol's metric on one set and its unweighted average over a group's sets
PRIMARY = {
    "generation": ("accuracy", "average"),
    "label-words": ("loglik_accuracy", "average_loglik"),
    "standard": ("loglik_accuracy_standard", "average_loglik_standard"),
}
# a log-likelihood protocol's choice in a prediction record, and the tag of its metrics (`loglik_accuracy<_norm><tag>`)
CHOICE_FIELDS = {"label-words": ("loglik_choice", ""), "standard": ("standard_choice", "_standard")}
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
    """One file of a benchmark or mix: its path in the data root, how its rows convert, the answers' kind, and lm-eval's
    standard formulation of its set (None where there is none)."""

    path: str
    part: str
    convert: Converter = llm_adapters_row
    answer_kind: AnswerKind | None = None  # None: per row (a letter A-E, a number, else a label word)
    standard: Formulation | None = None


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
        if file.standard is not None:
            try:
                file.standard.document(row)
            except (KeyError, ValueError, IndexError) as error:
                raise BenchError(
                    f"{where}: the instruction does not give lm-eval's {file.standard.task} document ({error})",
                    "repair that row, or declare the file without a standard formulation",
                ) from None
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
    protocols: tuple[Protocol, ...] = ("generation", "label-words")
    mask_prompt: bool = True
    model_kind: str = "causal-lm"
    validation_size: int = 200
    description: str = ""

    @property
    def primary_metric(self) -> str:
        single, group = PRIMARY[self.protocols[0]]
        return group if len(self.benchmarks) > 1 else single

    @property
    def formulations(self) -> dict[str, Formulation]:
        """lm-eval's standard formulation of each part (benchmark or mix file) that has one."""
        files = [benchmark.file for benchmark in self.benchmarks] + [file for mix in self.mixes for file in mix.files]
        return {file.part: file.standard for file in files if file.standard is not None}

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
        mix = self.train_mix(source)
        if self.protocols[0] == "standard" and not any(file.standard for file in mix.files):
            raise BenchError(
                f"{self.name} is scored by lm-eval's standard formulations, which no file of its mix {mix.name} declares, so its validation split would have no score",
                "train on a mix whose files name their set (the offline mix does), or use the generation task",
            )
        return [row for file in mix.files for row in read_file(source, file)]

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
                name: text
                for name, text in {
                    "generation": f"greedy, continuous batching with left padding (equal to one-at-a-time), max_new_tokens={self.max_new_tokens}, extraction rules of tasks/extraction.py",
                    "label-words": "lm-eval multiple_choice over the label words / letters A-E after the pinned prompt (acc, acc_norm); not applicable to open numeric answers",
                    "standard": "lm-eval's standard formulations (its own task configs' prompts and answer-text choices, rebuilt from the rows, tasks/formulations.py) by log-likelihood (acc, acc_norm, lm-eval's standard errors); parts without one are not scored by it",
                }.items()
                if name in self.protocols
            },
            "primary_protocol": self.protocols[0],
            "standard_formulations": {part: formulation.task for part, formulation in self.formulations.items()},
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
        records = [{"index": i, "subtask": row["subtask"], "answer": row["answer"]} for i, row in enumerate(examples)]
        if "generation" in self.protocols:
            from tasks.generation import generate

            prompts = [build_prompt(row["instruction"], row["input"]) for row in examples]
            outputs = across_ranks(
                prompts,
                partial(
                    generate,
                    model,
                    tokenizer,
                    max_new_tokens=self.max_new_tokens,
                    batch_size=batch_size,
                    progress=progress,
                ),
            )  # greedy decoding is batch-invariant: the same answers as one process
            for record, row, text in zip(records, examples, outputs):
                record.update(output=text, **judge(row, text))
        self._choose(model, tokenizer, examples, records, batch_size, progress)
        if self.protocols[0] != "generation":
            key = CHOICE_FIELDS[self.protocols[0]][0]
            for record in records:
                if key in record:
                    record["correct"] = record[key] == record["answer"]
        per_part = {part: _scores([r for r in records if r["subtask"] == part]) for part in _parts(examples)}
        if len(self.benchmarks) > 1:
            metrics = _group_metrics(per_part)
        else:
            metrics = _scores(records) | (
                {f"{part}/{name}": value for part, values in per_part.items() for name, value in values.items()}
                if len(per_part) > 1
                else {}
            )
        return EvalResult(metrics=metrics, predictions=records)

    def _choose(
        self,
        model: nn.Module,
        tokenizer: Any,
        examples: list[dict[str, Any]],
        records: list[dict[str, Any]],
        batch_size: int,
        progress: bool,
    ) -> None:
        """Score the log-likelihood protocols' items in one lm-eval pass and write each example's choice (and its
        acc_norm choice) as its label word into its record."""
        chosen: dict[str, list[tuple[int, ChoiceItem]]] = {}
        formulations = self.formulations
        for i, row in enumerate(examples):
            for protocol in CHOICE_FIELDS:
                if protocol in self.protocols and (item := self._choice_item(protocol, row, formulations)) is not None:
                    chosen.setdefault(f"{row['subtask']} {protocol}", []).append((i, item))
        if not chosen:
            return
        scored = score_multiple_choice(
            model,
            tokenizer,
            {name: [item for _, item in pairs] for name, pairs in chosen.items()},
            batch_size,
            progress,
        )
        for name, pairs in chosen.items():
            key = CHOICE_FIELDS[name.rpartition(" ")[2]][0]
            for (i, _), choice, choice_norm in zip(pairs, scored[name]["choices"], scored[name]["choices_norm"]):
                labels = _choices(examples[i])
                records[i][key], records[i][f"{key}_norm"] = labels[choice], labels[choice_norm]

    def _choice_item(
        self, protocol: str, row: dict[str, Any], formulations: dict[str, Formulation]
    ) -> ChoiceItem | None:
        """What `protocol` asks lm-eval to score for `row` (`formulations`: the task's, by part); None where it does not
        apply."""
        if protocol == "label-words":
            return None if row["answer_kind"] == "number" else choice_item(row, self._lead(row))
        formulation = formulations.get(row["subtask"])
        return None if formulation is None else formulation.choice_item(row)

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


def mean_stderr(hits: list[float]) -> float:
    """lm-eval's standard error of a mean: the sample standard deviation over the square root of the count."""
    return statistics.stdev(hits) / math.sqrt(len(hits))


def _scores(records: list[dict[str, Any]]) -> dict[str, float]:
    """Every protocol's metrics over `records`; the standard errors only when they come from one part (parts are pooled
    by mean, and a pooled standard error would ignore that), and from more than one example."""
    scores = {}
    generated = [r for r in records if "output" in r]
    if generated:
        scores["accuracy"] = sum(r["correct"] for r in generated) / len(generated)
        scores["format_failure_rate"] = sum(r["extracted"] is None for r in generated) / len(generated)
        if any("correct_first_capital" in r for r in generated):
            scores["accuracy_first_capital"] = sum(r.get("correct_first_capital", False) for r in generated) / len(
                generated
            )
    one_part = len({r["subtask"] for r in records}) == 1
    for key, tag in CHOICE_FIELDS.values():
        with_choice = [r for r in records if key in r]
        for suffix in ("", "_norm"):
            hits = [float(r[key + suffix] == r["answer"]) for r in with_choice]
            if hits:
                scores[f"loglik_accuracy{suffix}{tag}"] = statistics.fmean(hits)
            if one_part and len(hits) > 1:
                scores[f"loglik_accuracy{suffix}{tag}_stderr"] = mean_stderr(hits)
    return scores


def _group_metrics(per_part: dict[str, dict[str, float]]) -> dict[str, float]:
    """The paper-style group report: unweighted averages over the parts that have a metric, then `<part>/<metric>`
    for each part."""
    averages = {}
    for name, average in (
        ("accuracy", "average"),
        ("loglik_accuracy", "average_loglik"),
        ("format_failure_rate", "average_format_failure_rate"),
        ("loglik_accuracy_standard", "average_loglik_standard"),
        ("loglik_accuracy_norm_standard", "average_loglik_norm_standard"),
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
    protocols: tuple[Protocol, ...] = ("generation", "label-words")
    tasks: list[InstructionTask] = field(init=False)

    def __post_init__(self) -> None:
        common = {
            "family": self.family,
            "mixes": self.mixes,
            "max_new_tokens": self.max_new_tokens,
            "protocols": self.protocols,
        }
        singles = [
            InstructionTask(name=f"{self.family}/{benchmark.name}", benchmarks=(benchmark,), **common)
            for benchmark in self.benchmarks
        ]
        self.tasks = [*singles, InstructionTask(name=f"{self.family}/all", benchmarks=self.benchmarks, **common)]
