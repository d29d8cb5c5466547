"""`bench report` on committed stores writes the committed tables again, byte for byte: moving or restructuring the
report code changes no number. The report runs on a copy of each store's records, under the same relative path, so
the store named in results.md is the committed one's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.report.write import write_report

ROOT = Path(__file__).resolve().parents[1]
STORES = ("decoder-arithmetic", "decoder")  # results/default: the same check, about 5 minutes, kept out of make test
TABLES = ("metrics.csv", "cells.csv", "runs.csv", "collapses.csv", "tables.tex", "results.md")


@pytest.mark.parametrize("name", STORES)
def test_report_rewrites_the_committed_tables(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    committed = ROOT / "results" / name
    copy = tmp_path / "results" / name
    copy.mkdir(parents=True)
    for path in committed.iterdir():
        if path.is_file():
            shutil.copy2(path, copy / path.name)
    monkeypatch.chdir(tmp_path)
    write_report(Path("results") / name, log_to_wandb=False)
    differing = [
        table
        for table in TABLES
        if (committed / "report" / table).exists()
        and (copy / "report" / table).read_bytes() != (committed / "report" / table).read_bytes()
    ]
    assert differing == []
    assert (copy / "report" / "results.md").exists()
