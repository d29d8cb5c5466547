"""The committed results say what their records say: every report's per-cell numbers are the mean and sample std of
the record files it lists (recomputed here from the JSON, without the report code), every listed run was made at a
clean commit with its provenance, and the README's decoder and plateau tables carry the reports' numbers, so a table
edited by hand or a store changed without its report fails here."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORTED_STORES = sorted(path.parent.parent for path in ROOT.glob("results/*/report/metrics.csv"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def cell_of(row: dict[str, str]) -> tuple[str, str, str, str]:
    return row["model"], row["task"], row["method"], row["budget"]


def reported_records(store: Path) -> dict[tuple[str, str, str, str], list[dict]]:
    """The record files each cell of the committed report lists (report/runs.csv), read as plain JSON."""
    cells: dict[tuple[str, str, str, str], list[dict]] = {}
    for row in read_csv(store / "report" / "runs.csv"):
        record = json.loads((store / f"{row['key']}.json").read_text())
        cells.setdefault(cell_of(row), []).append(record)
    return cells


def test_the_committed_stores_with_reports_are_found() -> None:
    names = {store.name for store in REPORTED_STORES}
    assert {"decoder", "decoder-arithmetic", "default"} <= names


@pytest.mark.parametrize("store", REPORTED_STORES, ids=lambda path: path.name)
def test_report_numbers_are_the_aggregates_of_the_listed_records(store: Path) -> None:
    records = reported_records(store)
    rows = read_csv(store / "report" / "metrics.csv")
    assert {cell_of(row) for row in rows} == set(records)
    for row in rows:
        runs = records[cell_of(row)]
        values = [100 * run["metrics"]["test"][row["metric"]] for run in runs]
        assert int(row["n"]) == len(values)
        assert float(row["mean"]) == pytest.approx(statistics.mean(values), abs=1e-9), (cell_of(row), row["metric"])
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        assert float(row["std"]) == pytest.approx(spread, abs=1e-9), (cell_of(row), row["metric"])


@pytest.mark.parametrize("store", REPORTED_STORES, ids=lambda path: path.name)
def test_every_reported_run_records_a_clean_commit_seed_data_hashes_and_libraries(store: Path) -> None:
    for runs in reported_records(store).values():
        for record in runs:
            assert record["status"] == "ok"
            assert re.fullmatch(r"[0-9a-f]{40}", record["env"]["git"]["commit"])
            assert record["env"]["git"]["dirty"] is False, record["run_key"]
            assert isinstance(record["config"]["seed"], int)
            assert {"torch", "transformers", "lightning", "peft", "lm_eval"} <= set(record["env"]["libraries"])
            assert record["data"]["files"], record["run_key"]
            assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in record["data"]["files"].values())


# README decoder tables: display names and budgets as printed -> the report's cell keys.
METHODS = {
    "Zero-shot (base)": "zero-shot",
    "Full FT": "full",
    "LoRA": "lora",
    "DoRA": "dora",
    "SMT": "smt",
    "row-SFT": "row-sft",
    "SVFit": "svfit",
    "DEFT (λ 0.1)": "deft",
}
BUDGETS = {"0": "none", "100 %": "all", "0.06 % (own)": "native", "0.83 %": "0.83%"}
COLUMNS = {
    "BoolQ": "boolq/accuracy",
    "PIQA": "piqa/accuracy",
    "SIQA": "siqa/accuracy",
    "HellaS.": "hellaswag/accuracy",
    "WinoG.": "winogrande/accuracy",
    "ARC-e": "arc-e/accuracy",
    "ARC-c": "arc-c/accuracy",
    "OBQA": "obqa/accuracy",
    "GSM8K": "gsm8k/accuracy",
    "SVAMP": "svamp/accuracy",
    "AQuA": "aqua/accuracy",
    "MAWPS": "mawps/accuracy",
    "AddSub": "addsub/accuracy",
    "MultiArith": "multiarith/accuracy",
    "SingleEq": "singleeq/accuracy",
    "Avg (gen.)": "average",
    "Avg (log-lik.)": "average_loglik",
    "AQuA (log-lik.)": "aqua/loglik_accuracy",
    "Format fail %": "average_format_failure_rate",
}


def readme_table(heading: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the first Markdown table after `heading` in the README."""
    text = (ROOT / "README.md").read_text()
    lines = text[text.index(heading) :].splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return table[0], table[2:]


@pytest.mark.parametrize(
    ("heading", "store"),
    [("### Commonsense: results", "decoder"), ("### Arithmetic: results", "decoder-arithmetic")],
)
def test_readme_decoder_tables_carry_the_committed_reports_numbers(heading: str, store: str) -> None:
    means = {
        (row["method"], row["budget"], row["metric"]): float(row["mean"])
        for row in read_csv(ROOT / "results" / store / "report" / "metrics.csv")
    }
    header, rows = readme_table(heading)
    checked = 0
    for row in rows:
        if row[0] not in METHODS:  # italic rows: majority answer and published numbers
            continue
        method, budget = METHODS[row[0]], BUDGETS[row[1]]
        for column, printed in zip(header[2:], row[2:]):
            mean = means[(method, budget, COLUMNS[column])]
            assert math.isclose(float(printed.split(" ± ")[0]), round(mean, 1), abs_tol=0.051), (row[0], column)
            checked += 1
    assert checked == 8 * (len(header) - 2)


PLATEAU_METHODS = {"LoRA": "lora", "DoRA": "dora", "DEFT (λ = 0.1)": "deft", "SMT": "smt", "row-SFT": "row-sft"}
PLATEAU_BUDGETS = {"13.8k": "13824", "20.8k": "20766", "2.65M": "2654208"}  # a method's own first or last count


def test_readme_plateau_table_carries_the_committed_reports_numbers() -> None:
    means = {
        (row["task"], row["method"], row["budget"], row["metric"]): float(row["mean"])
        for row in read_csv(ROOT / "results" / "plateau" / "report" / "metrics.csv")
    }
    header, rows = readme_table("### Plateau study: results")
    checked = 0
    for row in rows:
        for column, printed in zip(header[1:], row[1:]):
            scores, _, own = printed.partition(" (")
            budget = PLATEAU_BUDGETS[own.rstrip(")")] if own else column
            sst2, stsb = (float(score) for score in scores.split(" / "))
            method = PLATEAU_METHODS[row[0]]
            assert sst2 == round(means[("glue/sst2", method, budget, "accuracy")], 1), (row[0], column)
            assert stsb == round(means[("glue/stsb", method, budget, "pearson")], 1), (row[0], column)
            checked += 1
    assert checked == 5 * 6
