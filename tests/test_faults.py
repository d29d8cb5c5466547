"""Faults injected into real runs and sweeps (MiniLM, SST-2 slices, a few steps): a diverging run, a worker killed
mid-sweep, a corrupt record, the sweep's parent killed. Results never lie and are never lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from bench.cli import main
from bench.records.record import read_records
from bench.records.store import Store
from bench.report.compare import write_baseline
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.plan import plan
from bench.sweep.driver import run_sweep
from bench.sweep.spec import parse_spec
from tests.test_sweep import TINY, TRAINING, ok_records, sweep_process, wait_for, write_spec


def test_diverged_run_is_recorded_failed_with_its_step(tmp_path: Path) -> None:
    """Full fine-tuning at a learning rate of 1e8 turns the weights non-finite within a few steps."""
    config = RunConfig(
        method="full",
        task="glue/sst2",
        model="minilm-l6",
        lr=1e8,
        seed=0,
        **{**TRAINING, "max_steps": 8, "train_examples": 64},
    )
    record = execute(plan(config), tmp_path, progress=False)
    written = json.loads((tmp_path / f"{record['run_key']}.json").read_text())
    assert written["status"] == "failed" and "metrics" not in written
    divergence = written["divergence"]
    assert 1 <= divergence["step"] < 8, "training stopped at the first non-finite value, before its last step"
    assert divergence["quantity"] == "training loss" or divergence["quantity"].startswith("gradient of ")
    assert divergence["value"] in ("nan", "inf", "-inf") and str(divergence["step"]) in written["error"]
    assert not list(tmp_path.glob("*.predictions.jsonl"))
    assert Store(tmp_path).is_done(record["run_key"]) is False, "a failed run is retried by the next sweep"


def test_killed_worker_loses_no_finished_record(tmp_path: Path) -> None:
    """SIGKILL one of two workers (as the OOM killer would) while it runs a cell and after another cell finished."""
    spec = write_spec(
        tmp_path, {**TINY, "seeds": [0], "budgets": ["0.1%", "0.2%", "0.5%"], "methods": {"lora": {}, "full": {}}}
    )
    store = tmp_path / "store"
    sweep = sweep_process(spec, store, "--workers", "2")
    try:
        wait_for(lambda: ok_records(store) and _running(store), sweep)
        finished = {key: (path.stat().st_mtime_ns, path.read_bytes()) for key, path in ok_records(store).items()}
        victim_key, victim_pid = next(iter(_running(store).items()))
        os.kill(victim_pid, signal.SIGKILL)
        output, _ = sweep.communicate(timeout=900)
    finally:
        _kill_session(sweep)
    assert sweep.returncode == 0, output
    records = read_records(store)
    assert len(records) == 4 and {record["status"] for record in records} == {"ok"}, "no cell was recorded as failed"
    for key, (mtime, content) in finished.items():
        path = store / f"{key}.json"
        assert path.stat().st_mtime_ns == mtime and path.read_bytes() == content, "a finished record was rewritten"
    started = Counter(event["key"] for event in Store(store).events() if event["event"] == "started")
    assert all(started[key] == 1 for key in finished), "a finished cell ran again"
    assert started[victim_key] in (1, 2)  # 2 when the kill caught it mid-run (it may just have finished)
    again = run_sweep(
        parse_spec({**TINY, "seeds": [0], "budgets": ["0.1%", "0.2%", "0.5%"], "methods": {"lora": {}, "full": {}}}),
        store,
        progress=False,
    )
    assert again.counts() == Counter(skipped=4), "the rerun recomputes nothing"


def test_corrupt_record_is_named_by_report_and_compare_and_quarantined_by_sweep(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = parse_spec({**TINY, "seeds": [0], "methods": {"full": {}, "lora": {}}})
    store = tmp_path / "store"
    assert run_sweep(spec, store, progress=False).ok
    baseline = write_baseline(store, tmp_path / "baseline")
    lora = next(record["run_key"] for record in read_records(store) if record["config"]["method"] == "lora")
    broken = store / f"{lora}.json"
    truncated = broken.read_bytes()[:200]  # as a full disk or a crash mid-copy leaves it
    broken.write_bytes(truncated)
    capsys.readouterr()  # what the sweep's libraries printed

    for argv in (["report", str(store), "--no-wandb"], ["compare", str(store), str(baseline)]):
        assert main(argv) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and str(broken) in error and "is corrupt" in error and "Traceback" not in error
    assert not (store / "report").exists()

    result = run_sweep(spec, store, progress=False)
    assert result.counts() == Counter(done=1, skipped=1), "only the corrupt cell is recomputed"
    assert (store / "quarantine" / broken.name).read_bytes() == truncated, "the corrupt file is kept aside, not deleted"
    assert "is corrupt; moved to" in capsys.readouterr().err
    assert [event["file"] for event in Store(store).events() if event["event"] == "quarantined"] == [broken.name]
    assert json.loads(broken.read_text())["status"] == "ok"
    assert main(["compare", str(store), str(baseline)]) in (0, 1)  # readable again: the gate decides


def test_killing_the_sweep_parent_leaves_no_worker_behind(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {**TINY, "seeds": [0], "methods": {"lora": {}, "full": {}}})
    store = tmp_path / "store"
    sweep = sweep_process(spec, store, "--workers", "2")
    try:
        wait_for(lambda: bool(_running(store)), sweep)
        children = psutil.Process(sweep.pid).children(recursive=True)
        assert {pid for pid in _running(store).values()} <= {child.pid for child in children}
        os.kill(sweep.pid, signal.SIGKILL)  # the parent only, not its process group
        sweep.wait()
        deadline = time.monotonic() + 30
        while [child for child in children if _alive(child)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [child.pid for child in children if _alive(child)], "a worker outlived its sweep"
    finally:
        _kill_session(sweep)


def _running(store: Path) -> dict[str, int]:
    """Cells started and not yet recorded: key -> pid of the worker running it."""
    events = Store(store).events() if store.is_dir() else []
    recorded = {path.stem for path in store.glob("*.json")} if store.is_dir() else set()
    return {
        event["key"]: event["pid"]
        for event in events
        if event["event"] == "started" and event["key"] not in recorded and psutil.pid_exists(event["pid"])
    }


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill_session(process: subprocess.Popen) -> None:
    """Leave nothing running whatever the test's outcome: the sweep's whole session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
