"""Zero-shot: the base model scored as it is through the harness. No training step, nothing trainable, the same test
scores as the task's evaluation of the freshly loaded model, refused where a head would be untrained, and drawn in
reports as a line beside full fine-tuning."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from bench.report.write import write_report
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.models import load_model
from bench.run.plan import plan
from core.errors import BenchError

SHORT = {
    "task": "commonsense/boolq",
    "model": "smollm2-135m",
    "max_steps": 2,
    "batch_size": 2,
    "max_length": 96,
    "train_examples": 4,
    "validation_examples": 2,
    "test_examples": 4,
    "eval_batch_size": 8,
}
NEW_TOKENS = 6  # few new tokens: CPU generation is slow


def _run(store: Path, **changes: object) -> dict:
    run = plan(RunConfig(**(SHORT | changes)))
    run.task = dataclasses.replace(run.task, max_new_tokens=NEW_TOKENS)
    return execute(run, store, progress=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("zero-shot")
    _run(folder, method="zero-shot")
    _run(folder, method="lora", budget="0.2%")
    return folder


def _record(store: Path, method: str) -> dict:
    records = [json.loads(path.read_text()) for path in store.glob("*.json")]
    return next(record for record in records if record["config"]["method"] == method)


def test_zero_shot_takes_no_step_and_scores_the_base_model(store: Path) -> None:
    record = _record(store, "zero-shot")
    assert record["status"] == "ok" and record["cost"]["steps"] == 0 and record["params"]["achieved"] == 0
    assert record["method"]["knob"] == {"name": "none", "value": 0}
    run = plan(RunConfig(method="zero-shot", **SHORT))
    task = dataclasses.replace(run.task, max_new_tokens=NEW_TOKENS)
    loaded = load_model("smollm2-135m", task.model_kind)
    alone = task.evaluate(loaded.model.eval(), loaded.tokenizer, run.splits["test"], 8, 96)
    assert alone.metrics == record["metrics"]["test"]


def test_zero_shot_refuses_a_task_with_a_new_head() -> None:
    with pytest.raises(BenchError, match="untrained classification head"):
        execute(plan(RunConfig(method="zero-shot", task="glue/sst2", model="minilm-l6", test_examples=4)), Path("x"))


def test_report_draws_zero_shot_as_a_line_and_tabulates_it(store: Path) -> None:
    report = write_report(store, log_to_wandb=False)
    table = report.markdown_path.read_text(encoding="utf-8")
    row = next(line for line in table.splitlines() if line.startswith("| Zero-shot"))
    assert re.search(r"\|\s*none\s*\|", row), row
    assert report.figures, "the plateau figure is drawn with a zero-shot line"


def test_a_sweep_runs_zero_shot_once_per_seed_without_a_budget() -> None:
    from bench.sweep.spec import parse_spec

    spec = parse_spec(
        {
            "name": "decoder",
            "model": "smollm2-135m",
            "tasks": ["commonsense/boolq"],
            "seeds": [0, 1],
            "budgets": ["0.2%", "1%"],
            "methods": {"zero-shot": {}, "lora": {}},
        }
    )
    zero_shot = next(method for method in spec.methods if method.name == "zero-shot")
    assert zero_shot.budgets is None and not zero_shot.lrs


def test_wandb_plateau_chart_draws_zero_shot_flat_across_the_swept_budgets(store: Path) -> None:
    from bench.report import wandb_logging

    records = [json.loads(path.read_text()) for path in store.glob("*.json") if len(path.stem) == 64]
    chart = wandb_logging.report_charts(records)["plateau/smollm2-135m/commonsense-boolq"]
    lines: dict[str, list[tuple[float, float]]] = {}
    for step, key, value in chart.table.data:
        lines.setdefault(key, []).append((step, value))
    lora = next(record for record in records if record["config"]["method"] == "lora")
    zero_shot = next(record for record in records if record["config"]["method"] == "zero-shot")
    x = math.log10(lora["params"]["achieved"])  # zero-shot's 0 parameters have no place on a log axis
    score = 100 * zero_shot["metrics"]["test"][zero_shot["task"]["primary_metric"]]
    assert lines["zero-shot"] == [(x, pytest.approx(score))] * 2
