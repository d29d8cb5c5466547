"""Where task data comes from, with the sha256 of every file read.

Files are named by their path relative to a data root laid out like `tasks/data/` (e.g. `glue/SST-2/train.jsonl`).
The root is, in order: an explicit `--data-dir`, the `PEFT_BENCH_DATA` environment variable, or the compact real
subsets committed in `tasks/data/`. A file missing from the chosen root is an error, never a silent fallback, except
for splits a task declares on the Hugging Face hub: those are downloaded when a network exists (and recorded as
`hub:<dataset>/<config>/<split>` with the dataset's fingerprint); offline they are an error naming the missing file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from core.errors import BenchError
from core.files import once_per_version

COMMITTED_DATA = Path(__file__).resolve().parent / "data"
DATA_ENV = "PEFT_BENCH_DATA"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class DataSource:
    """Reads task files from one data root and remembers the sha256 of each file it read."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        chosen = data_dir or os.environ.get(DATA_ENV)
        self.root = Path(chosen).resolve() if chosen else COMMITTED_DATA
        self.kind = "data-dir" if chosen else "committed-subset"
        if not self.root.is_dir():
            raise BenchError(
                f"data directory {self.root} does not exist",
                f"point --data-dir or {DATA_ENV} at a folder laid out like tasks/data/",
            )
        self.files: dict[str, str] = {}

    def path(self, relative: str) -> Path:
        """The absolute path of `relative`, hashed into `files`; BenchError if it is missing."""
        path = self.root / relative
        if not path.is_file():
            raise BenchError(
                f"data file {relative} is missing from {self.root} ({self.kind})",
                f"put the file at {path}, or point --data-dir / {DATA_ENV} at a folder that has it",
            )
        if relative not in self.files:
            self.files[relative] = once_per_version(path, sha256_file)
        return path

    def has(self, relative: str) -> bool:
        return (self.root / relative).is_file()

    def read_hub(self, relative: str, dataset: str, config: str, split: str) -> list[dict[str, Any]]:
        """Rows of a hub split standing in for the missing local file `relative`; BenchError naming both if unreachable."""
        import datasets

        try:
            loaded = datasets.load_dataset(dataset, config, split=split)
        except Exception as error:  # offline, unknown config, no cache: all mean the same thing to the user
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BenchError(
                f"data file {relative} is missing from {self.root} ({self.kind}) and {dataset}/{config} split {split!r} cannot be loaded from the hub ({first_line})",
                f"put the file at {self.root / relative} (one JSON object per line, HF glue schema), or point --data-dir / {DATA_ENV} at a folder laid out like tasks/data/ that has it, or run with a network",
            ) from None
        self.files[f"hub:{dataset}/{config}/{split}"] = loaded._fingerprint
        return _check_objects([dict(row) for row in loaded], Path(f"hub:{dataset}/{config}/{split}"))

    def read_records(self, relative: str) -> list[dict[str, Any]]:
        """Rows of a `.jsonl`, `.json` (a list of objects) or `.tsv` file; malformed rows and non-UTF-8 files are named."""
        path = self.path(relative)
        try:
            return list(once_per_version(path, _rows))
        except UnicodeDecodeError as error:
            raise BenchError(
                f"{path} is not UTF-8 text ({error.reason} at byte {error.start})", "save the file as UTF-8"
            ) from None


def _rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise BenchError(
                        f"{path}, row {line_number}: not valid JSON ({error.msg})", "repair or remove that row"
                    ) from None
        return _check_objects(rows, path)
    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise BenchError(
                f"{path}: not valid JSON at line {error.lineno} ({error.msg})", "repair the file"
            ) from None
        if not isinstance(rows, list):
            raise BenchError(f"{path}: expected a JSON list of examples", "store the split as a list of objects")
        return _check_objects(rows, path)
    if path.suffix == ".tsv":
        with open(path, encoding="utf-8", newline="") as handle:
            return _check_objects(list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)), path)
    raise BenchError(f"{path}: unsupported file type {path.suffix!r}", "use .jsonl, .json or .tsv")


def _check_objects(rows: list[Any], path: Path) -> list[dict[str, Any]]:
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise BenchError(
                f"{path}, row {index}: expected a JSON object, got {type(row).__name__}", "repair or remove that row"
            )
    if not rows:
        raise BenchError(f"{path}: the split is empty", "point the task at a file with examples")
    return rows
