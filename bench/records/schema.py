"""JSON Schemas of what the harness reads back: run records, baseline summaries and history entries, checked at
every read.

A record or summary that misses a field the reports, the gate or the sweep read, or holds it with the wrong type,
is refused with one error naming the file and the field (`CorruptFile`), before anything uses it. The schemas
require what every record of schema version 1 holds (README.md, "Result records"); fields added later (`timings`,
`curves`, `artifacts`, ...) are optional, so older stores stay readable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from core.files import CorruptFile

NUMBER = {"type": "number"}
COUNT = {"type": "integer", "minimum": 0}
TEXT = {"type": "string"}
SCORES = {"type": "object", "additionalProperties": {"type": ["number", "null"]}}


def _object(required: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """An object schema: every key of `required` must be present, `optional` keys are typed when present."""
    return {"type": "object", "required": list(required), "properties": required | optional}


CONFIG = _object(
    {
        "method": TEXT,
        "task": TEXT,
        "model": TEXT,
        "seed": {"type": "integer"},
        "budget": {"type": ["string", "null"]},
        "lr": {"type": ["number", "null"]},
        "max_steps": COUNT,
        "batch_size": COUNT,
        "precision": TEXT,
    },
    num_nodes={"type": "integer", "minimum": 1},  # recorded since multi-node runs; older records have one node
)
RECORD_OK = _object(
    {
        "schema_version": {"const": 1},
        "run_key": TEXT,
        "status": {"const": "ok"},
        "created_at": TEXT,
        "config": CONFIG,
        "method": _object({"name": TEXT, "knob": _object({"name": TEXT, "value": {"type": ["number", "null"]}})}),
        "task": _object({"name": TEXT, "primary_metric": TEXT}),
        "model": _object({"name": TEXT, "fingerprint": TEXT}),
        "params": _object({"base_model": COUNT, "achieved": COUNT, "achieved_pct": NUMBER}),
        "metrics": _object({"validation": SCORES, "test": SCORES}),
        "eval": _object({"test": _object({"examples": COUNT})}),
        "cost": _object(
            {
                "step_time_median_s": {"type": ["number", "null"]},
                "steps": COUNT,
                "peak_memory_bytes": COUNT,
                "memory_kind": TEXT,
                "adapter_bytes": COUNT,
            }
        ),
        "density": {"type": ["object", "null"]},
        "data": _object({"source": TEXT, "files": {"type": "object", "additionalProperties": TEXT}}),
        "env": _object({"libraries": {"type": "object"}, "git": {"type": "object"}}),
        "wall_time_s": NUMBER,
    },
    timings={"type": "object", "additionalProperties": NUMBER},
    curves={"type": "object"},
    artifacts={"type": "object"},
    resumed={"type": "array", "items": _object({"from_step": COUNT})},
)
RECORD_FAILED = _object(
    {
        "schema_version": {"const": 1},
        "run_key": TEXT,
        "status": {"const": "failed"},
        "error": TEXT,
        "config": {"type": "object"},
    }
)
CELL = {"model": TEXT, "task": TEXT, "method": TEXT, "budget": TEXT, "metric": TEXT}  # a summary's or history's cell
STAT = {"anyOf": [{"type": "null"}, _object({"mean": NUMBER, "std": NUMBER, "n": COUNT})]}
SUMMARY = _object(
    {
        "schema": {"const": "peft-bench-summary/1"},
        "created_at": TEXT,
        "source": TEXT,
        "cells": {
            "type": "array",
            "items": _object(
                {
                    **CELL,
                    "score": _object({"mean": NUMBER, "std": NUMBER, "n": COUNT}),
                    "memory_mb": STAT,
                    "step_time_s": STAT,
                    "memory_kind": {"type": ["string", "null"]},
                    "config_fingerprint": {"type": ["string", "null"]},
                }
            ),
        },
    }
)
HISTORY_RUN = _object(
    {
        "seed": {"type": "integer"},
        "score": NUMBER,
        "step_time_s": {"type": ["number", "null"]},
        "memory_mb": NUMBER,
        "predictions_sha256": {"type": ["string", "null"]},
    }
)
HISTORY_ENTRY = _object(
    {
        "schema": {"const": "peft-bench-history/1"},
        "commit": TEXT,
        "dirty": {"type": "boolean"},
        "date": TEXT,
        "hardware": TEXT,
        "cuda": {"type": "boolean"},
        "libraries": {"type": "object", "additionalProperties": TEXT},
        "data": {"type": "object", "additionalProperties": TEXT},
        "cells": {
            "type": "array",
            "items": _object({**CELL, "runs": {"type": "array", "minItems": 1, "items": HISTORY_RUN}}),
        },
    }
)
_VALIDATORS = {
    name: Draft202012Validator(schema)
    for name, schema in (
        ("ok", RECORD_OK),
        ("failed", RECORD_FAILED),
        ("summary", SUMMARY),
        ("history", HISTORY_ENTRY),
    )
}


def _field(error: Any) -> str:
    """The dotted field an error is about: the missing key for `required`, the offending value's path otherwise."""
    where = [str(part) for part in error.absolute_path]
    if error.validator == "required":
        where.append(error.message.split("'")[1])
    return ".".join(where) or "(top level)"


def _check(kind: str, path: Path, data: dict[str, Any]) -> None:
    errors = sorted(_VALIDATORS[kind].iter_errors(data), key=lambda error: list(map(str, error.absolute_path)))
    if errors:
        first = errors[0]
        problem = "missing" if first.validator == "required" else first.message
        raise CorruptFile(path, f"field {_field(first)}: {problem}")


def check_record_fields(path: Path, record: dict[str, Any]) -> None:
    """Raise `CorruptFile` naming `path` and the first field of `record` its status's schema refuses."""
    _check("ok" if record.get("status") == "ok" else "failed", path, record)
    if record["status"] == "ok":
        for split in ("validation", "test"):
            if record["task"]["primary_metric"] not in record["metrics"][split]:
                raise CorruptFile(path, f"field metrics.{split}.{record['task']['primary_metric']}: missing")


def check_summary_fields(path: Path, summary: dict[str, Any]) -> None:
    """Raise `CorruptFile` naming `path` and the first field of `summary` the summary schema refuses."""
    _check("summary", path, summary)


def check_history_fields(path: Path, entry: dict[str, Any]) -> None:
    """Raise `CorruptFile` naming `path` and the first field of `entry` the history schema refuses."""
    _check("history", path, entry)
