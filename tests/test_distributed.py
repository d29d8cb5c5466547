"""Distributed runs on the CPU over gloo: evaluation split across processes and gathered in order, a DDP sweep that
runs each cell once on its own two processes, a divergence that stops every rank, and FSDP's closest CPU form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from bench.records.record import read_records
from bench.run.artifacts import restore_run
from bench.run.models import load_model
from tasks import get_task
from tasks.base import across_ranks
from tasks.data_source import DataSource
from tests.test_wandb import by_step, read_run

ROOT = Path(__file__).resolve().parent.parent
WORLD = 2
TRAINING = {
    "max_steps": 2,
    "batch_size": 8,
    "max_length": 32,
    "train_examples": 32,
    "validation_examples": 16,
    "test_examples": 40,
    "eval_batch_size": 8,
    "calibration_batches": 1,
    "accelerator": "cpu",
    "devices": WORLD,
}
SWEEP_SECONDS = 150  # the 2-cell DDP sweep's time limit; it took 50-80 s on two cores shared with other jobs
STSB_ROWS = 40  # five batches of 8: a regression, so predictions are floats compared exactly


def _stsb(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """STS-B predictions of a seeded MiniLM on `rows`, and how many examples this process ran through the model."""
    torch.manual_seed(0)
    loaded = load_model("minilm-l6", "sequence-classification", num_labels=1)
    seen = []
    loaded.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    result = get_task("glue/stsb").evaluate(loaded.model, loaded.tokenizer, rows, batch_size=8, max_length=64)
    return result.predictions, sum(seen)


def _on_rank(rank: int, store: str, score: Any, rows: list[dict[str, Any]], out: Any) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        out[rank] = score(rows)
    finally:
        dist.destroy_process_group()


def _on_ranks(score: Any, rows: list[dict[str, Any]], folder: Path) -> dict[int, Any]:
    """What `score(rows)` returned on each of WORLD processes of one process group."""
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_on_rank, args=(str(folder / "store"), score, rows, out), nprocs=WORLD)
        return dict(out)


def test_glue_evaluation_is_split_across_ranks_with_the_predictions_of_one_process(tmp_path: Path) -> None:
    rows = get_task("glue/stsb").load("test", DataSource(), STSB_ROWS)
    out = _on_ranks(_stsb, rows, tmp_path)
    alone, scored_alone = _stsb(rows)
    assert scored_alone == STSB_ROWS and out[0][1] + out[1][1] == STSB_ROWS
    assert 0 < out[1][1] <= out[0][1] < STSB_ROWS  # each rank ran its own batches only
    assert out[0][0] == out[1][0] == alone


def _commonsense(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, float], int]:
    """SmolLM2's commonsense predictions and metrics on `rows` (generation and log-likelihood), and how many
    log-likelihood items this process had lm-eval score."""
    import tasks.lm_eval_bridge as bridge

    loaded = load_model("smollm2-135m", "causal-lm")
    scored, score_items = [], bridge._score_items

    def counted(model: Any, tokenizer: Any, named: list[Any], **options: Any) -> list[dict[str, Any]]:
        scored.extend(named)
        return score_items(model, tokenizer, named, **options)

    bridge._score_items = counted
    try:
        result = get_task("commonsense/all").evaluate(
            loaded.model, loaded.tokenizer, rows, batch_size=4, max_length=256
        )
    finally:
        bridge._score_items = score_items
    return result.predictions, result.metrics, len(scored)


@pytest.mark.slow  # two SmolLM2 processes (about 40 s); the GLUE split is checked in make test
def test_decoder_evaluation_is_split_across_ranks_with_the_scores_of_one_process(tmp_path: Path) -> None:
    """One test example of each of four commonsense sets (4 parts of one item each), scored by label words (4 items)
    and by lm-eval's standard formulations (3 items: BoolQ has none): each rank scores no item of some parts."""
    rows = get_task("commonsense/all").load("test", DataSource(), 1)[:4]
    out = _on_ranks(_commonsense, rows, tmp_path)
    alone = _commonsense(rows)
    assert len({row["subtask"] for row in rows}) == 4
    assert alone[2] == 7 and (out[0][2], out[1][2]) == (4, 3)  # each rank scored its half
    assert out[0][:2] == out[1][:2] == alone[:2]
    assert {
        "average_loglik",
        "boolq/loglik_accuracy",
        "average_loglik_standard",
        "piqa/loglik_accuracy_standard",
    } <= set(alone[1])


def test_across_ranks_without_a_process_group_scores_everything() -> None:
    assert across_ranks([1, 2, 3], lambda own: [item + 1 for item in own]) == [2, 3, 4]


def _command(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        **env,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout
    )


def _run_flags(**changes: Any) -> list[str]:
    settings = {**TRAINING, **changes}
    return [part for name, value in settings.items() for part in (f"--{name.replace('_', '-')}", str(value))]


def _reevaluated_alone(record_path: Path) -> bool:
    """Whether one process scoring the saved state gets the test predictions the run's processes gathered."""
    record = json.loads(record_path.read_text(encoding="utf-8"))
    task = get_task(record["task"]["name"])
    _, loaded, module = restore_run(record_path, task)
    config = record["config"]
    rows = task.load("test", DataSource(), config["test_examples"])
    alone = task.evaluate(module.model, loaded.tokenizer, rows, config["eval_batch_size"], config["max_length"])
    lines = record_path.with_name(f"{record['run_key']}.predictions.jsonl").read_text(encoding="utf-8").splitlines()
    stored = [
        {k: v for k, v in row.items() if k != "split"} for row in map(json.loads, lines) if row["split"] == "test"
    ]
    return alone.predictions == stored and alone.metrics == record["metrics"]["test"]


def test_ddp_sweep_runs_each_cell_once_on_its_own_processes(tmp_path: Path) -> None:
    """Two cells with `devices: 2, strategy: ddp` and W&B offline: no deadlock, one record and one W&B run per cell."""
    spec = {
        "name": "ddp",
        "model": "minilm-l6",
        "tasks": ["glue/sst2"],
        "seeds": [0, 1],
        "budgets": ["0.5%"],
        "training": {**TRAINING, "strategy": "ddp"},
        "methods": {"lora": {}},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    store = tmp_path / "store"
    done = _command(
        "bench.cli", "sweep", str(tmp_path / "spec.yaml"), "--out", str(store), "--quiet", timeout=SWEEP_SECONDS
    )
    assert done.returncode == 0, done.stdout + done.stderr
    cells = json.loads((store / "sweep.json").read_text(encoding="utf-8"))["cells"]
    records = read_records(store)
    assert len(cells) == 2 and sorted(r["run_key"] for r in records) == sorted(c["key"] for c in cells)
    for record in records:
        assert record["status"] == "ok" and record["eval"]["test"]["examples"] == TRAINING["test_examples"]
        assert record["cost"]["world_size"] == WORLD and record["cost"]["global_batch_size"] == WORLD * 8
        assert _reevaluated_alone(store / f"{record['run_key']}.json")
    runs = sorted((store / "wandb").glob("offline-run-*"))  # one W&B run per cell, logged by the cell's rank 0
    assert sorted(run.name.rsplit("-", 1)[1] for run in runs) == sorted(c["key"] for c in cells)


@pytest.mark.slow
def test_ddp_divergence_stops_every_rank_and_is_recorded_once(tmp_path: Path) -> None:
    done = _command(
        "bench.cli", "run", "--method", "full", "--task", "glue/sst2", "--model", "minilm-l6", "--lr", "1e8",
        *_run_flags(max_steps=6), "--strategy", "ddp", "--out", str(tmp_path), "--quiet",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    (record,) = read_records(tmp_path)
    assert record["status"] == "failed" and record["divergence"]["value"] in ("nan", "inf", "-inf")


def test_fsdp_on_two_cpu_processes_saves_the_whole_model(tmp_path: Path) -> None:
    """Full fine-tuning sharded by FSDP: the learning curve's evaluation between steps, the final evaluation and the
    saved state see every weight, gathered from both ranks."""
    done = _command(
        "tests.distributed_cli", "run", "--method", "full", "--task", "glue/sst2", "--model", "minilm-l6",
        *_run_flags(eval_every=1), "--strategy", "fsdp_cpu", "--out", str(tmp_path), "--quiet", "--wandb",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = read_records(tmp_path)
    assert record["status"] == "ok" and record["cost"]["world_size"] == WORLD
    assert [point["step"] for point in record["curves"]["validation"]] == [1, 2]
    assert _reevaluated_alone(tmp_path / f"{record['run_key']}.json")
    (run,) = (tmp_path / "wandb").glob("offline-run-*")  # rank 0's alone, with the curve's point logged during fit
    assert run.name.endswith(record["run_key"])
    assert by_step(read_run(run))[1]["validation/accuracy"] == record["curves"]["validation"][0]["accuracy"]


def test_a_failing_rank_fails_the_run_without_a_record(tmp_path: Path) -> None:
    """Rank 1 raises after training: the command exits non-zero and nothing is recorded as a result; W&B holds rank
    0's run, logged while it trained."""
    done = _command(
        "tests.distributed_cli", "run", "--method", "lora", "--budget", "0.5%", "--task", "glue/sst2",
        "--model", "minilm-l6", *_run_flags(), "--strategy", "ddp", "--out", str(tmp_path), "--quiet", "--wandb",
        FAIL_RANK="1",
    )  # fmt: skip
    assert done.returncode != 0 and "rank 1 fails on purpose" in done.stderr
    assert read_records(tmp_path) == [] and len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
