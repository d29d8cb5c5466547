"""A run's files as W&B artifacts, each named by the run key, with its sha256 and size in the metadata.

Three artifacts per run, those of its files that exist: `run-record-<run key>` (type `run-record`, the record JSON),
`predictions-<run key>` (type `predictions`, the predictions JSONL) and `adapter-<run key>` (type `adapter`, the saved
state `<run key>.adapter.safetensors` the record lists under `artifacts.adapter`). A file is added with the
`immutable` policy: W&B stages no copy, and offline, `wandb sync` uploads it from the store, which must still hold it.
A file larger than UPLOAD_LIMIT_BYTES is not uploaded: its artifact holds a `file://` reference to it in the store
with W&B's checksum of it, and its metadata says `uploaded: false`. At 64 MiB, every adapter state of the committed
stores uploads (the largest is 43 MiB) and every full fine-tuning state is referenced
(MiniLM's is 87 MiB, SmolLM2's 513 MiB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.records.store import Store
from tasks.data_source import sha256_file

UPLOAD_LIMIT_BYTES = 64 * 2**20  # larger files (full fine-tuning states) are referenced, not uploaded


def run_files(store: Path, record: dict[str, Any]) -> dict[str, Path]:
    """The files of a record by artifact type: its record, predictions and saved state, those that exist."""
    key = record["run_key"]
    adapter = record.get("artifacts", {}).get("adapter")
    files = {
        "run-record": Store(store).record_path(key),
        "predictions": Store(store).predictions_path(key),
        "adapter": store / adapter["file"] if adapter else None,
    }
    return {kind: path for kind, path in files.items() if path is not None and path.is_file()}


def artifact(kind: str, run_key: str, path: Path) -> Any:
    """The artifact `<kind>-<run_key>` of type `kind` holding `path`: uploaded up to UPLOAD_LIMIT_BYTES, referenced
    above; its metadata names the run key and the file, and gives its sha256, size and whether it uploads."""
    import wandb

    size = path.stat().st_size
    uploaded = size <= UPLOAD_LIMIT_BYTES
    metadata = {"run_key": run_key, "file": path.name, "sha256": sha256_file(path), "bytes": size, "uploaded": uploaded}
    entry = wandb.Artifact(f"{kind}-{run_key}", type=kind, metadata=metadata)
    if uploaded:
        entry.add_file(str(path.resolve()), name=path.name, policy="immutable")
    else:
        entry.add_reference(path.resolve().as_uri(), name=path.name)
    return entry


def log_artifacts(run: Any, store: Path, record: dict[str, Any]) -> None:
    """Log the files of `record` in `store` as artifacts of the W&B `run`."""
    for kind, path in run_files(store, record).items():
        run.log_artifact(artifact(kind, record["run_key"], path))
