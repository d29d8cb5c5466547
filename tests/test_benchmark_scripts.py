"""Every script in benchmarks/ runs to its end on tiny settings and prints its table, so a script that no longer runs
fails `make test` instead of the next `make benchmarks` or GPU host. Each runs as `make benchmarks` runs it: a fresh
process from the repository root, offline. gpu_check.py is checked in test_gpu_check.py: without CUDA the script
itself only says so, and its parts (the step-cost table among them) are tested on the CPU there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}
FAILURE = re.compile(r"not measured|error|traceback|missing|n/a", re.IGNORECASE)


def run_script(script: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """The stdout lines of `python benchmarks/<script> *args`; fails on a nonzero exit, showing the end of stderr."""
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        env={**os.environ, **OFFLINE, "PYTHONPATH": path, **(env or {})},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"{script} exited with {done.returncode}:\n" + "\n".join(
        done.stderr.strip().splitlines()[-15:]
    )
    return done.stdout.splitlines()


def assert_no_failure(lines: list[str]) -> None:
    """No printed line reports an error or a number that was not measured."""
    assert not [line for line in lines if FAILURE.search(line)], "\n".join(lines)


@pytest.mark.slow  # every method in a fresh process (about 50 s); `make benchmarks` runs the script in full
def test_step_cost() -> None:
    """Every requested method gets a row of numbers and every target it takes part in a ratio (the full table runs
    nine methods; these five cover the floor, LoRA as the reference, and each kind of target). On MiniLM, which
    loads in a second; SmolLM2's causal batches run in test_precision_cost."""
    methods = ["floor", "lora", "smt", "row-sft", "svfit"]
    tiny = ("--model", "minilm-l6", "--steps", "1", "--warmup", "1", "--batch-size", "2", "--tokens", "32")
    tiny += ("--threads", "1")
    lines = run_script("step_cost.py", "--methods", ",".join(methods), *tiny)
    rows = {line.split()[0]: line for line in lines[2 : 2 + len(methods)]}
    assert list(rows) == methods, "\n".join(lines)
    number = r"\d+\.\d+"
    assert all(re.match(rf"\S+\s+\S+=\d+\s+[\d,]+\s+{number}\s+{number} \|", row) for row in rows.values()), rows
    targets = [line for line in lines if line.startswith("target ")]
    assert {line.split()[1] for line in targets} == {"smt", "row-sft", "svfit"}
    assert all(re.search(rf": {number}×? (met|MISSED)$", line) for line in targets), targets
    assert not [line for line in lines if "not measured" in line or "error" in line.lower()], "\n".join(lines)


def test_step_cost_measures_every_method_that_trains_by_default() -> None:
    """Without --methods the table lists every registered method that takes a training step; zero-shot, which takes
    none, has no step to time (the floor is its forward + backward) and once ended the full run with exit 1."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import step_cost  # a script in benchmarks/, imported from its folder

    from methods import registry

    names = step_cost.default_methods(registry())
    assert "zero-shot" not in names
    assert {name for name, method in registry().items() if method.trains} <= set(names)


def test_precision_cost() -> None:
    """fp32 and bf16-mixed side by side: a row of numbers per model and method, the verdict last (SmolLM2 here,
    MiniLM in test_step_cost: each model kind's batches once)."""
    methods, models = ["floor", "row-sft"], ["smollm2-135m"]
    tiny = ("--steps", "1", "--warmup", "1", "--shapes", "smollm2-135m=2x16")
    lines = run_script("precision_cost.py", "--models", ",".join(models), "--methods", ",".join(methods), *tiny)
    rows = lines[2 : 2 + len(methods) * len(models)]
    assert [tuple(row.split()[:2]) for row in rows] == [(model, method) for model in models for method in methods]
    number = r"\d+\.\d+"
    pattern = rf"\S+\s+\S+\s+{number}\s+{number}\s+{number}× \|\s+{number}\s+{number}\s+{number} \| (met|MISSED)$"
    assert all(re.match(pattern, row) for row in rows), rows
    assert_no_failure(lines)


@pytest.mark.slow  # loads SmolLM2 twice; `make benchmarks` runs the script in full
def test_answer_logits() -> None:
    lines = run_script("answer_logits.py", "--steps", "1", "--batch-size", "2", "--max-length", "64", "--threads", "1")
    assert sum("losses agree on every batch" in line for line in lines) == 2
    assert sum("step-time ratio (every / supervised)" in line for line in lines) == 2
    assert_no_failure(lines)


@pytest.mark.slow  # SmolLM2 generation at several batch sizes; `make benchmarks` runs the script in full
def test_generation_batching() -> None:
    """Commonsense only: arithmetic's 256 new tokens per prompt would take minutes, on the same code."""
    lines = run_script(
        "generation_batching.py", "--examples", "2", "--batch-size", "2", "--families", "commonsense", "--threads", "1"
    )
    assert any("identical predictions" in line for line in lines)
    assert any(re.search(r"tokens/s: fp32 [\d.]+, bf16-mixed [\d.]+ \([\d.]+x\)", line) for line in lines), lines
    assert lines[-1].startswith("all families: batch 1") and "speed-up" in lines[-1]
    assert_no_failure(lines)


def test_evaluation_split() -> None:
    """MiniLM on SST-2 only (SmolLM2's commonsense case takes minutes on a shared machine)."""
    lines = run_script("evaluation_split.py", "--cases", "sst2", "--glue-examples", "16", "--processes", "2")
    assert lines[0].startswith("| evaluation | examples |")
    assert re.fullmatch(r"\| sst2 \| 16 \| [\d.]+ \| [\d.]+ \| [\d.]+x \| yes \|", lines[-1]), lines
    assert_no_failure(lines)


def plan_only(script: str, out: Path) -> list[str]:
    """A study script's `--plan-only` listing; the committed subsets stand in for the full training sets."""
    return run_script(script, "--plan-only", "--out", str(out), env={"PEFT_BENCH_DATA": str(ROOT / "tasks" / "data")})


def test_plateau_ablations(tmp_path: Path) -> None:
    """Every run of the study planned through the harness, without training; the committed subsets stand in for the
    full training sets the study reads."""
    lines = plan_only("plateau_ablations.py", tmp_path)
    assert any(line.startswith("| deft-lambda | λ = 1 | glue/sst2 |") for line in lines), lines
    assert re.search(r"^\d+ runs planned, 0 stored, \d+ to train", lines[-1]), lines
    assert_no_failure(lines)


def test_precision_parity_plans_both_arms_of_every_cell(tmp_path: Path) -> None:
    """Every cell and seed of the parity check planned in fp32 and bf16-mixed from the study's sweep.json, without
    training; the committed subsets stand in for the full training sets."""
    lines = plan_only("precision_parity.py", tmp_path)
    rows = [line.split(" | ") for line in lines if line.startswith("| glue/")]
    assert len(rows) == 36 and {row[4] for row in rows} == {"32-true", "bf16-mixed"}, lines
    assert len({row[5] for row in rows}) == 36  # the precision is in the run key
    assert lines[-1].startswith("36 runs planned, 0 stored, 36 to train"), lines
    assert_no_failure(lines)


@pytest.mark.slow  # about a minute of decoder runs; `make benchmarks` runs the script in full
def test_protocol_deviations() -> None:
    """One short run through the harness, its greedy outputs against beams and the response split."""
    lines = run_script(
        "protocol_deviations.py",
        *("--parts", "beams", "--max-steps", "1", "--batch-size", "2", "--test-examples", "1", "--threads", "1"),
    )
    assert any(line.startswith("2. Greedy vs 4-beam decoding") for line in lines), lines
    assert any(line.startswith('4. Splitting on "### Response:"') for line in lines), lines
    assert any(line.startswith("| 4 beams (LLM-Adapters) |") for line in lines), lines
    assert_no_failure(lines)
