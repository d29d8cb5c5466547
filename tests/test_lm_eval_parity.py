"""lm-eval's standard formulations against lm-eval itself: its shipped task configs, their dataset pointed at local
documents rebuilt from the committed LLM-Adapters slices, give the same requests as the suite's formulations (every
set, every committed row, no model) and, through `lm_eval.simple_evaluate` on SmolLM2, the same per-example choices,
accuracies and standard errors as the suite's `commonsense-standard` tasks."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lm_eval
import pytest
import torch
import yaml
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager, get_task_dict

from bench.run.models import LoadedModel, load_model
from tasks import get_task
from tasks.commonsense import BENCHMARKS
from tasks.data_source import DataSource
from tasks.formulations import Formulation
from tasks.instruction import row_labels

SHIPPED = Path(lm_eval.__file__).parent / "tasks"
CONFIGS = {  # lm-eval task -> its shipped config
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "piqa": "piqa/piqa.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "winogrande": "winogrande/default.yaml",
    "social_iqa": "siqa/siqa.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
}
STANDARD = {b.name: b.file.standard for b in BENCHMARKS if b.file.standard is not None}
PER_SET = 16  # documents per set scored by the model (about 35 s of one core for both sides)


def shipped_on_local_documents(folder: Path, formulation: Formulation, rows: list[dict[str, Any]]) -> None:
    """Write lm-eval's shipped config of `formulation.task` into `folder`, its dataset replaced by the documents of
    `rows` in a local json file (one test split, no training split to draw few-shot examples from)."""
    data = folder / f"{formulation.task}.json"
    data.write_text(json.dumps([formulation.document(row) for row in rows]), encoding="utf-8")
    config = {
        "include": str(SHIPPED / CONFIGS[formulation.task]),
        "task": formulation.task,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "training_split": None,
        "validation_split": None,
        "test_split": "test",
    }
    (folder / f"{formulation.task}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def rows_of(name: str, limit: int | None = None) -> list[dict[str, Any]]:
    return get_task(f"commonsense-standard/{name}").load("test", DataSource(), limit)


def test_every_set_asks_lm_eval_what_its_shipped_config_asks(tmp_path):
    """Each set's items, built from every committed row, are the (context, continuation) requests and the gold index
    lm-eval's own config builds from the same documents: prompts, answer texts, HellaSwag's preprocessing and
    WinoGrande's partial evaluation included."""
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    rows = {name: rows_of(name) for name in STANDARD}
    for name, formulation in STANDARD.items():
        shipped_on_local_documents(tmp_path, formulation, rows[name])
    tasks = get_task_dict(
        [formulation.task for formulation in STANDARD.values()],
        TaskManager(include_path=str(tmp_path), include_defaults=False),
    )
    for name, formulation in STANDARD.items():
        task = tasks[formulation.task]
        task.build_all_requests(rank=0, world_size=1)
        requests: dict[int, list[tuple[str, str]]] = {}
        for instance in sorted(task.instances, key=lambda instance: (instance.doc_id, instance.idx)):
            requests.setdefault(instance.doc_id, []).append(instance.arguments)
        assert len(requests) == len(rows[name]) == 150, name
        for doc_id, row in enumerate(rows[name]):
            item = formulation.choice_item(row)
            expected = (
                [(context, f" {item.continuation}") for context in item.choices]
                if item.continuation is not None
                else [(item.context, f" {choice}") for choice in item.choices]
            )
            assert requests[doc_id] == expected, (name, doc_id)
            doc = task.eval_docs[doc_id]
            gold = task.doc_to_text(doc) if item.continuation is not None else task.doc_to_target(doc)
            assert int(gold) == item.gold == row_labels(row).index(row["answer"]), (name, doc_id)


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    torch.manual_seed(0)
    return load_model("smollm2-135m", "causal-lm")


def test_simple_evaluate_of_shipped_configs_gives_the_suites_choices_and_scores(smollm2, tmp_path):
    """ARC-Easy, PIQA and WinoGrande (a multiple-input set): lm-eval's shipped configs on local documents, run by
    `simple_evaluate` with lm-eval's own HFLM, choose the same answer per example (by acc and by acc_norm) as the
    `commonsense-standard` tasks, with the same acc, acc_norm and standard errors."""
    names = ("arc-e", "piqa", "winogrande")
    rows = {name: rows_of(name, PER_SET) for name in names}
    for name in names:
        shipped_on_local_documents(tmp_path, STANDARD[name], rows[name])
    results = lm_eval.simple_evaluate(
        model=HFLM(pretrained=smollm2.model, tokenizer=smollm2.tokenizer, batch_size=8),
        tasks=[STANDARD[name].task for name in names],
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
        num_fewshot=0,
        log_samples=True,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )
    ours = get_task("commonsense-standard/all").evaluate(
        smollm2.model, smollm2.tokenizer, [row for name in names for row in rows[name]], batch_size=8, max_length=512
    )
    for name in names:
        task = STANDARD[name].task
        samples = sorted(results["samples"][task], key=lambda sample: sample["doc_id"])
        records = [record for record in ours.predictions if record["subtask"] == name]
        assert len(samples) == len(records) == PER_SET
        for sample, record, row in zip(samples, records, rows[name]):
            loglikelihoods = [response[0] for response in sample["filtered_resps"]]
            assert record["standard_choice"] == row_labels(row)[loglikelihoods.index(max(loglikelihoods))], name
            assert float(record["standard_choice"] == row["answer"]) == sample["acc"], name
            if "acc_norm" in sample:
                assert float(record["standard_choice_norm"] == row["answer"]) == sample["acc_norm"], name
        shipped = results["results"][task]
        for metric, ours_name in (("acc", "loglik_accuracy_standard"), ("acc_norm", "loglik_accuracy_norm_standard")):
            if f"{metric},none" in shipped:  # lm-eval's winogrande lists acc only
                assert ours.metrics[f"{name}/{ours_name}"] == pytest.approx(shipped[f"{metric},none"], abs=1e-12)
                assert ours.metrics[f"{name}/{ours_name}_stderr"] == pytest.approx(
                    shipped[f"{metric}_stderr,none"], abs=1e-12
                ), name
