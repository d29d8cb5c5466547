"""What a run trained, saved next to its record, and the saved run rebuilt on a fresh base model.

`<store>/<run_key>.adapter.safetensors` holds the method's `export_state()`: LoRA/DoRA adapter tensors, SMT blocks with
their block indices, row-SFT row deltas with their row indices, SVFit's singular values, DEFT's base-method state,
every weight for full fine-tuning; always the task head too. Its metadata (`peft_bench`, JSON) names the run, method,
knob, options, model and task, so the file describes itself. The record lists it under `artifacts.adapter` with its
sha256 and size, which `load_state` checks.

`restore_run` rebuilds the trained model: the base model named in the record (its fingerprint must match), the method
re-attached at the recorded knob and options with the saved selection instead of calibration, the saved tensors loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from bench.run.models import LoadedModel, load_model
from core.errors import BenchError
from methods import get_method
from methods.base import PeftMethod
from tasks import get_task
from tasks.base import Task
from tasks.data_source import sha256_file

ADAPTER_SUFFIX = ".adapter.safetensors"
METADATA_KEY = "peft_bench"


def write_state(module: PeftMethod, path: Path, description: dict[str, Any]) -> dict[str, Any]:
    """Save `module.export_state()` with `description` in the metadata, atomically; the record's entry for it."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.export_state().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        save_file(state, partial, metadata={METADATA_KEY: json.dumps(description, sort_keys=True, default=str)})
        digest = sha256_file(partial)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return {"file": path.name, "sha256": digest, "bytes": path.stat().st_size, "tensors": len(state)}


def read_record(path: Path) -> dict[str, Any]:
    """An ok run record that lists a saved state; BenchError otherwise."""
    if not path.is_file():
        raise BenchError(f"no run record at {path}", "pass the <run_key>.json of a stored run")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BenchError(f"{path} is not a JSON run record", "pass the <run_key>.json of a stored run") from None
    if not isinstance(record, dict) or "run_key" not in record or "config" not in record:
        raise BenchError(f"{path} is not a run record", "pass the <run_key>.json of a stored run")
    if record.get("status") != "ok":
        raise BenchError(
            f"run {record['run_key'][:12]} did not finish (status {record.get('status')!r})",
            "rerun it; only finished runs have a saved state",
        )
    if "adapter" not in record.get("artifacts", {}):
        raise BenchError(
            f"run {record['run_key'][:12]} has no saved state (recorded before runs saved what they trained)",
            "rerun it to save its state",
        )
    return record


def load_state(record_path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The saved tensors of `record`, after checking the file's sha256 against the record."""
    entry = record["artifacts"]["adapter"]
    path = record_path.parent / entry["file"]
    if not path.is_file():
        raise BenchError(
            f"the saved state {path} is missing",
            "copy it next to the record (stores under results/ keep records only), or rerun the run",
        )
    if sha256_file(path) != entry["sha256"]:
        raise BenchError(
            f"the saved state {path} does not match the sha256 in its record",
            "restore the original file, or rerun the run",
        )
    return load_file(path)


def check_compatible(record: dict[str, Any], task: Task) -> None:
    """BenchError unless `task` uses the model kind and label count the run was trained for."""
    trained = get_task(record["task"]["name"])
    if (task.model_kind, task.num_labels) != (trained.model_kind, trained.num_labels):
        raise BenchError(
            f"task {task.name} ({task.model_kind}, {task.num_labels} labels) does not fit a run trained on {trained.name} ({trained.model_kind}, {trained.num_labels} labels)",
            "choose a task of the same kind and label count",
        )


def restore_run(record_path: Path, task: Task) -> tuple[dict[str, Any], LoadedModel, PeftMethod]:
    """(record, base model, method with the trained state) of the saved run at `record_path`, in eval mode."""
    record = read_record(record_path)
    check_compatible(record, task)
    state = load_state(record_path, record)
    config = record["config"]
    loaded = load_model(config["model"], task.model_kind, task.num_labels, config["dtype"])
    if loaded.fingerprint != record["model"]["fingerprint"]:
        raise BenchError(
            f"the weights of model {config['model']} ({loaded.fingerprint}) are not those the run trained on ({record['model']['fingerprint']})",
            "install or point to the model version the record names",
        )
    method_cls = get_method(record["method"]["name"])
    options = method_cls.Options(
        **{
            key: tuple(value) if isinstance(value, list) else value
            for key, value in record["method"]["options"].items()
        }
    )
    module = method_cls(loaded.model, options, head_prefixes=loaded.head_prefixes)
    module.restore(record["method"]["knob"]["value"], state)
    module.eval()
    return record, loaded, module
