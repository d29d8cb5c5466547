"""The regression gate: passes on a rerun of the same seeds, fails on an injected regression."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.records.record import read_records
from bench.report.compare import Tolerances, compare_stores, compare_summaries, write_baseline
from bench.report.write import LATER_SETTINGS, config_fingerprint
from bench.run.config import RunConfig
from tests.test_sweep import TINY, bench_command, sweep_process, tiny_store, write_spec


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tiny_store(tmp_path_factory.getbasetemp())["store"]
    return write_baseline(store, tmp_path_factory.mktemp("baselines") / "tiny").parent


def test_gate_passes_on_a_rerun_of_the_same_seeds(
    tmp_path: Path, baseline: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The LoRA cell is recomputed from scratch in a fresh store copy; full fine-tuning is kept."""
    original = tiny_store(tmp_path_factory.getbasetemp())["store"]
    rerun = tmp_path / "rerun"
    shutil.copytree(original, rerun, ignore=shutil.ignore_patterns("wandb", "report", "logs", "locks"))
    removed = [r["run_key"] for r in read_records(rerun) if r["config"]["method"] == "lora"]
    for key in removed:
        (rerun / f"{key}.json").unlink()
        (rerun / f"{key}.predictions.jsonl").unlink()
    process = sweep_process(write_spec(tmp_path, TINY), rerun)
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0 and "2 run, 2 already stored" in output, output
    comparison = compare_stores(rerun, baseline)
    assert not comparison.regressed, comparison.markdown()
    assert "Same library versions and machine as the baseline." in comparison.markdown()
    assert comparison.exact and "Exact mode" in comparison.markdown()  # same machine and libraries: bit for bit
    result = subprocess.run(bench_command("compare", str(rerun), str(baseline)), capture_output=True, text=True)
    assert result.returncode == 0 and "No regression" in result.stdout


def test_gate_fails_on_an_injected_regression(
    tmp_path: Path, baseline: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = tiny_store(tmp_path_factory.getbasetemp())["store"]
    summary = json.loads((baseline / "summary.json").read_text())
    lora = next(cell for cell in summary["cells"] if cell["method"] == "lora")
    lora["score"]["mean"] += (
        2 * lora["score"]["std"] + 3
    )  # the baseline was better than the new results by more than 2σ + 1 point
    worse = tmp_path / "better-baseline.json"
    worse.write_text(json.dumps(summary))
    comparison = compare_stores(store, worse)
    assert comparison.regressed
    assert "**REGRESSION**" in next(line for line in comparison.markdown().splitlines() if "lora" in line)
    result = subprocess.run(bench_command("compare", str(store), str(worse)), capture_output=True, text=True)
    assert result.returncode == 1 and "1 regression(s)" in result.stdout


def test_compare_names_changed_libraries_and_writes_json_for_a_pull_request(
    tmp_path: Path, baseline: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = tiny_store(tmp_path_factory.getbasetemp())["store"]
    summary = json.loads((baseline / "summary.json").read_text())
    assert summary["provenance"]["libraries"]["torch"] and summary["provenance"]["commits"]
    summary["provenance"]["libraries"]["torch"] = ["2.0.0"]
    summary["provenance"]["hardware"] = ["Some Other CPU"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(summary))
    markdown = compare_stores(store, older).markdown()
    torch_now = ", ".join(json.loads((baseline / "summary.json").read_text())["provenance"]["libraries"]["torch"])
    assert f"Changed since the baseline: torch 2.0.0 → {torch_now}; machine Some Other CPU → " in markdown
    output = tmp_path / "pr" / "gate.json"
    output.parent.mkdir()
    command = bench_command("compare", str(store), str(older), "--format", "json", "--output", str(output))
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    written = json.loads(output.read_text())
    assert written == json.loads(result.stdout) and written["regressed"] is False
    assert {cell["method"] for cell in written["cells"]} == {"full", "lora"} and written["changed"][0].startswith(
        "torch"
    )


def test_gpu_memory_regression_and_missing_cells_fail_while_cpu_cost_is_informational(
    tmp_path: Path, baseline: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = tiny_store(tmp_path_factory.getbasetemp())["store"]
    summary = json.loads((baseline / "summary.json").read_text())
    full = next(cell for cell in summary["cells"] if cell["method"] == "full")
    full["step_time_s"]["mean"] /= 10  # ten times faster in the baseline: CPU time never gates
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(summary))
    assert not compare_stores(store, path).regressed
    full["memory_mb"]["mean"] /= 2  # CPU peak RSS moves with run order and worker count: shown, not gated
    path.write_text(json.dumps(summary))
    assert not compare_stores(store, path, Tolerances()).regressed
    on_gpu = json.loads(json.dumps(summary))
    for cell in on_gpu["cells"]:
        cell["memory_kind"] = "cuda_max_allocated"
    gpu_baseline, gpu_new = tmp_path / "gpu-baseline.json", tmp_path / "gpu-new.json"
    gpu_baseline.write_text(json.dumps(on_gpu))
    next(cell for cell in on_gpu["cells"] if cell["method"] == "full")["memory_mb"]["mean"] *= 3
    gpu_new.write_text(json.dumps(on_gpu))
    assert (
        compare_stores(gpu_new, gpu_baseline).regressed
        and "more memory" in compare_stores(gpu_new, gpu_baseline).markdown()
    )
    summary["cells"].append({**full, "budget": "9%", "method": "lora"})
    path.write_text(json.dumps(summary))
    assert "missing" in compare_stores(store, path).markdown()


@pytest.mark.parametrize(("setting", "changed"), [("mask_prompt", False), ("num_nodes", 2)])
def test_a_setting_added_later_leaves_older_records_comparable_with_the_baseline(setting: str, changed: Any) -> None:
    """A record written before `mask_prompt` (or `num_nodes`) existed (no such key) fingerprints as today's default
    run does, so a baseline of older records still compares like with like; a run that changes the setting does not.
    The committed default records match their baseline's cells."""
    repo = Path(__file__).resolve().parent.parent
    summary = json.loads((repo / "results" / "baselines" / "default" / "summary.json").read_text())
    fingerprints = {cell["config_fingerprint"] for cell in summary["cells"]}
    records = read_records(repo / "results" / "default")
    assert records
    for record in records:
        today = RunConfig(**record["config"]).to_dict()
        older = {name: value for name, value in today.items() if name != setting}
        assert today[setting] == LATER_SETTINGS[setting]
        assert config_fingerprint(older) == config_fingerprint(today) == config_fingerprint(record["config"])
        assert config_fingerprint(today) in fingerprints
        assert config_fingerprint({**today, setting: changed}) != config_fingerprint(today)


def test_exact_mode_names_the_first_prediction_that_differs(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A broken variant: one test answer of one LoRA run changed. Its score moves well within the tolerance, but on
    the same machine and libraries the check fails and names the example; on another machine it passes."""
    original = tiny_store(tmp_path_factory.getbasetemp())["store"]
    broken = tmp_path / "broken"
    shutil.copytree(original, broken, ignore=shutil.ignore_patterns("wandb", "report", "logs", "locks"))
    run = next(r for r in read_records(broken) if r["config"]["method"] == "lora" and r["config"]["seed"] == 1)
    path = broken / f"{run['run_key']}.predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    index = next(i for i, row in enumerate(rows) if row["split"] == "test")
    rows[index]["prediction"] = 1 - rows[index]["prediction"]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    comparison = compare_stores(broken, original)
    assert comparison.exact and comparison.regressed
    (row,) = [row for row in comparison.rows if row.status == "DIFFERS"]
    assert row.cell[2] == "lora"
    expected = f"predictions of seed 1 differ from the baseline's, first at test example {rows[index]['index']}"
    assert [note for note in row.notes if note.startswith(f"exact mode: {expected} (prediction: ")], row.notes
    elsewhere = json.loads(write_baseline(original, tmp_path / "baseline.json").read_text())
    elsewhere["provenance"]["hardware"] = ["Another CPU"]
    (tmp_path / "elsewhere.json").write_text(json.dumps(elsewhere))
    assert not compare_stores(broken, tmp_path / "elsewhere.json").regressed  # only the tolerances apply there


def _predictions_store(folder: Path, wrong: dict[int, set[int]], examples: int = 100) -> dict:
    """A folder of SST-2-style predictions for seeds 0 and 1 (example i wrong where listed), and its summary cell."""
    folder.mkdir()
    runs = []
    for seed, misses in wrong.items():
        key = f"{folder.name}-{seed}"
        rows = [
            {"split": "test", "index": i, "label": 1, "prediction": 0 if i in misses else 1} for i in range(examples)
        ]
        (folder / f"{key}.predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        runs.append({"seed": seed, "key": key, "predictions_sha256": None})
    scores = [100 * (1 - len(misses) / examples) for misses in wrong.values()]
    cell = {"model": "m", "task": "t", "method": "lora", "budget": "32k", "metric": "accuracy", "runs": runs}
    mean = sum(scores) / 2
    return cell | {"score": {"mean": mean, "std": 12.0, "n": 2}}  # seeds far apart: 2σ = 24 points


def test_a_drop_within_the_seed_spread_fails_when_the_same_examples_show_it(tmp_path: Path) -> None:
    base = _predictions_store(tmp_path / "base", {0: set(), 1: set()})
    worse = _predictions_store(tmp_path / "worse", {0: set(range(8)), 1: set(range(8))})  # 8 answers lost: -8 points
    summary = {"cells": [worse]}
    rows = compare_summaries(summary, {"cells": [base]}, Tolerances(), (tmp_path / "worse", tmp_path / "base"))
    assert rows[0].status == "REGRESSION" and "(-8.0, tol 24.0)" in rows[0].score  # the seed rule alone says ok
    assert rows[0].notes[0].startswith("paired per-example change -0.08 on 100 test examples, p 0.00")
    small = _predictions_store(tmp_path / "small", {0: {0}, 1: set()})  # half a point: under the 1-point floor
    rows = compare_summaries(
        {"cells": [small]}, {"cells": [base]}, Tolerances(), (tmp_path / "small", tmp_path / "base")
    )
    assert rows[0].status == "ok"
    assert compare_summaries(summary, {"cells": [base]}, Tolerances())[0].status == "ok"  # summaries only: no pairs
