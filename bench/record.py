"""The result record: one self-describing JSON per run, its content key, and atomic writes.

Schema version 1 (documented in README.md, "Result records"). The record's file name is its `run_key`, a
sha256 over everything that determines the run: resolved config, method options, data file hashes, the source
code of the method and task used, library versions and the model fingerprint.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.errors import BenchError

SCHEMA_VERSION = 1


def source_hash(*objects: Any) -> str:
    """sha256 over the source files that define `objects` (classes or modules), deduplicated and sorted."""
    files = sorted({inspect.getsourcefile(obj if inspect.ismodule(obj) or inspect.isclass(obj) else type(obj)) for obj in objects})
    digest = hashlib.sha256()
    for file in files:
        digest.update(Path(file).name.encode())
        digest.update(Path(file).read_bytes())
    return digest.hexdigest()


def content_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def check_writable(directory: Path) -> None:
    """BenchError unless `directory` is, or could be created as, a writable folder; leaves nothing behind."""
    probe = Path(directory).resolve()
    while not probe.exists():
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(probe)
        with tempfile.TemporaryFile(dir=probe):  # a real write: permissions, read-only mounts, ACLs
            pass
    except OSError:
        raise BenchError(f"output directory {directory} is not writable ({probe} is not a writable folder)", "pass --out with a folder you can write to") from None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to `path` through a temporary file in the same folder, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=False, default=str)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            for row in rows:
                stream.write(json.dumps(row, default=str) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every run record (`*.json` with a `schema_version`) directly under `directory`."""
    records = []
    for path in sorted(Path(directory).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "schema_version" in data and "run_key" in data:
            records.append(data)
    return records
