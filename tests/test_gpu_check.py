"""The GPU check's parts that run without a GPU: its CPU fallback, the agreement check, the step-cost table, DDP and
the checkpoint/resume round trip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402 - a script in benchmarks/, imported from its folder


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for machines without CUDA")
def test_without_cuda_it_says_so_in_one_line_and_exits_0() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")],
        capture_output=True,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert done.returncode == 0
    assert done.stdout.count("\n") == 1 and "no CUDA device" in done.stdout


def test_agreement_check_cpu_against_cpu() -> None:
    agreement = gpu_check.prediction_agreement(("cpu", "cpu"), model="minilm-l6", task_name="glue/sst2", examples=8)
    assert agreement["examples"] == 8 and agreement["differing"] == []
    assert set(agreement["metrics"]) == {"cpu"} and 0 <= agreement["metrics"]["cpu"]["accuracy"] <= 1


@pytest.mark.slow  # two fresh processes loading SmolLM2 (about a minute on two quiet cores)
def test_step_cost_table_in_bf16_on_a_tiny_run() -> None:
    lines, failed = gpu_check.step_cost_table(
        "smollm2-135m", "bfloat16", "cpu", methods="floor,lora", steps=1, warmup=1
    )
    assert failed == []
    rows = {line.split()[0]: line for line in lines[2:4]}
    assert set(rows) == {"floor", "lora"} and "rank=16" in rows["lora"] and "none=0" in rows["floor"]
    assert "peak memory: cpu_rss_peak during fit" in lines


def test_ddp_run_writes_one_record_and_one_state(tmp_path: Path) -> None:
    record = gpu_check.ddp_run(tmp_path, "cpu", 2, max_steps=2)
    assert record["config"]["strategy"] == "ddp" and record["config"]["devices"] == "2"
    assert record["artifacts"]["adapter"]["file"] == f"{record['run_key']}.adapter.safetensors"


@pytest.mark.slow  # three bench run processes (35 s); bit-identical resume is checked in-process by test_checkpoints.py
def test_resume_round_trip_on_the_cpu_stopped_by_sigterm_from_outside(tmp_path: Path) -> None:
    """`bench run` gets SIGTERM once its first checkpoint exists, exits 75, and the same command resumes it to the
    metrics, curve and saved state of the run never stopped."""
    trip = gpu_check.resume_round_trip(tmp_path, "cpu", signal.SIGTERM)
    assert "bench: stopped: SIGTERM received: stopped after step" in trip["stopped_message"]
    assert "rerun to resume" in trip["stopped_message"]
    (resumed_from,) = trip["resumed"]["resumed"]
    assert 2 <= resumed_from["from_step"] < 30 and trip["whole"]["resumed"] == []
    assert gpu_check.round_trip_differences(trip) == []
