"""Records and summaries are checked against their schema at every read: each field the harness reads, removed in
turn from a real committed record or baseline, makes `bench report` or `bench compare` stop with one
`bench: error:` line naming the file and the field, and leaves every file as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.records.record import RUN_KEY_NAME, read_records
from bench.records.schema import RECORD_FAILED, RECORD_OK, SUMMARY

RESULTS = Path(__file__).resolve().parents[1] / "results"
RECORD = next(iter(sorted((RESULTS / "default").glob("*.json"))))
BASELINE = RESULTS / "baselines" / "default" / "summary.json"
READ_BY_THE_HARNESS = {  # fields the reports, the gate and the sweep read: the schemas must require each
    "metrics.test",
    "metrics.validation",
    "task.primary_metric",
    "params.achieved",
    "params.base_model",
    "cost.peak_memory_bytes",
    "cost.step_time_median_s",
    "config.method",
    "config.budget",
    "config.seed",
    "config.lr",
    "model.name",
}


def required_fields(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every required key of an object schema, nested objects included (array items as `cells.0`)."""
    for key in schema.get("required", []):
        yield prefix + key
        child = schema["properties"][key]
        if child.get("type") == "array":
            yield from required_fields(child["items"], f"{prefix}{key}.0.")
        else:
            yield from required_fields(child, f"{prefix}{key}.")


def without(data: dict[str, Any], dotted: str) -> dict[str, Any]:
    """A deep copy of `data` without the field at `dotted`."""
    copy = json.loads(json.dumps(data))
    *parents, last = dotted.split(".")
    target = copy
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    del target[last]
    return copy


def digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def refused(argv: list[str], folder: Path, capsys: pytest.CaptureFixture) -> str:
    """The one error line of `bench <argv>`, checking the exit code and that nothing under `folder` changed."""
    before = digest(folder)
    capsys.readouterr()
    assert main(argv) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), lines
    assert digest(folder) == before
    return lines[0]


def test_the_schemas_require_what_the_harness_reads() -> None:
    assert set(required_fields(RECORD_OK)) >= READ_BY_THE_HARNESS
    assert {"error", "config", "run_key"} <= set(required_fields(RECORD_FAILED))
    assert {"cells.0.score.mean", "cells.0.method", "cells.0.budget"} <= set(required_fields(SUMMARY))


def test_every_committed_record_passes_its_schema() -> None:
    stores = {path.parent for path in RESULTS.rglob("*.json") if RUN_KEY_NAME.fullmatch(path.stem)}
    assert len(stores) >= 10
    for store in sorted(stores):
        assert read_records(store), store


@pytest.mark.parametrize(
    "field", sorted({*required_fields(RECORD_OK), "metrics.test.accuracy", "metrics.validation.accuracy"})
)
def test_a_record_without_a_field_is_refused_by_name(field: str, tmp_path: Path, capsys) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / RECORD.name).write_text(json.dumps(without(json.loads(RECORD.read_text()), field)))
    line = refused(["report", str(store)], tmp_path, capsys)
    assert RECORD.name in line and f"field {field}" in line, line


@pytest.mark.parametrize("field", sorted(required_fields(SUMMARY)))
def test_a_baseline_without_a_field_is_refused_by_name(field: str, tmp_path: Path, capsys) -> None:
    shutil.copy(BASELINE, tmp_path / "new.json")
    (tmp_path / "baseline.json").write_text(json.dumps(without(json.loads(BASELINE.read_text()), field)))
    line = refused(["compare", str(tmp_path / "new.json"), str(tmp_path / "baseline.json")], tmp_path, capsys)
    assert "baseline.json" in line and (f"field {field}" in line or field == "schema"), line


def test_a_record_of_the_wrong_type_or_under_another_name_is_refused(tmp_path: Path, capsys) -> None:
    record = json.loads(RECORD.read_text())
    store = tmp_path / "store"
    store.mkdir()
    (store / RECORD.name).write_text(json.dumps(record | {"params": {**record["params"], "achieved": "many"}}))
    assert "field params.achieved: 'many' is not of type 'integer'" in refused(["report", str(store)], tmp_path, capsys)
    (store / RECORD.name).unlink()
    (store / f"{'0' * 64}.json").write_text(RECORD.read_text())
    assert "field run_key" in refused(["report", str(store)], tmp_path, capsys)
