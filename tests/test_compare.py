"""The regression gate: passes on a rerun of the same seeds, fails on an injected regression."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.records.record import read_records
from bench.report.compare import Tolerances, compare_stores, write_baseline
from bench.report.write import config_fingerprint
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


def test_a_setting_added_later_leaves_older_records_comparable_with_the_baseline() -> None:
    """A record written before `mask_prompt` existed (no such key) fingerprints as today's default run does, so a
    baseline of older records still compares like with like; a run that changes the setting does not. The committed
    default records match their baseline's cells."""
    repo = Path(__file__).resolve().parent.parent
    summary = json.loads((repo / "results" / "baselines" / "default" / "summary.json").read_text())
    fingerprints = {cell["config_fingerprint"] for cell in summary["cells"]}
    records = read_records(repo / "results" / "default")
    assert records
    for record in records:
        today = RunConfig(**record["config"]).to_dict()
        older = {name: value for name, value in today.items() if name != "mask_prompt"}
        assert today["mask_prompt"] is True
        assert config_fingerprint(older) == config_fingerprint(today) == config_fingerprint(record["config"])
        assert config_fingerprint(today) in fingerprints
        assert config_fingerprint({**today, "mask_prompt": False}) != config_fingerprint(today)
