"""The result record: one self-describing JSON per run, checked when it is read.

Schema version 1 (documented in README.md, "Result records"). The record's file name is its `run_key`
(bench.run.key); records are written atomically (core.files) with this machine's folders named, not spelled out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.records.environment import portable
from bench.records.schema import check_record_fields
from core.errors import BenchError
from core.files import CorruptFile, read_json, write_text_atomic

SCHEMA_VERSION = 1
RUN_KEY_NAME = re.compile(r"[0-9a-f]{64}")  # a record's file name (bench.run.key: a sha256)


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a run record (ok or failed) with this machine's folders named, not spelled out (see `portable`): a model
    source reads `<site-packages>/...` or `<cache>/models/...`, a traceback `<project>/bench/...`."""
    write_text_atomic(path, portable(json.dumps(record, indent=2, default=str)) + "\n")


def is_record(data: Any) -> bool:
    return isinstance(data, dict) and "schema_version" in data and "run_key" in data


def check_record(path: Path, data: Any) -> dict[str, Any]:
    """`data` read from `path`, if it is a record this code can read; BenchError naming the file otherwise."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise CorruptFile(path, "field schema_version: missing")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BenchError(
            f"record {path} has schema version {data.get('schema_version')!r}; this peft-bench reads version {SCHEMA_VERSION} only",
            "read it with the peft-bench version that wrote it, or move it out of the store and rerun its cell",
        )
    if data.get("status") not in ("ok", "failed"):
        found = "missing" if "status" not in data else f"{data['status']!r} is neither 'ok' nor 'failed'"
        raise CorruptFile(path, f"field status: {found}")
    check_record_fields(path, data)
    if RUN_KEY_NAME.fullmatch(path.stem) and data["run_key"] != path.stem:
        raise CorruptFile(path, f"field run_key: {data['run_key']!r} is not the file's name")
    return data


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every run record (`<run key>.json`, or any `*.json` with a `schema_version` and `run_key`) directly under
    `directory`; BenchError naming a corrupt one."""
    records = []
    for path in sorted(Path(directory).glob("*.json")):
        data = read_json(path)
        if RUN_KEY_NAME.fullmatch(path.stem) or is_record(data):
            records.append(check_record(path, data))
    return records
