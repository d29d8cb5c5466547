"""The sweep harness on real runs (MiniLM, SST-2, a few steps): spec checks, kill and restart, two workers on one
store, learning-rate tuning on the validation split, failed runs recorded and retried, reruns that compute nothing.

`tiny_store()` builds the store the report, compare and notebook tests read (once per test session).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from bench.records.record import read_records
from bench.records.store import Store
from bench.sweep.cells import expand
from bench.sweep.driver import run_sweep, summary_text
from bench.sweep.spec import load_spec, parse_spec
from bench.sweep.tuning import beyond_the_edge, choose_lrs, interpolate_lr, tuning_points
from core.errors import BenchError

TRAINING = {
    "max_steps": 2,
    "batch_size": 8,
    "max_length": 32,
    "train_examples": 16,
    "validation_examples": 16,
    "test_examples": 32,
    "calibration_batches": 1,
}
TINY = {
    "name": "tiny",
    "model": "minilm-l6",
    "tasks": ["glue/sst2"],
    "seeds": [0, 1],
    "budgets": ["0.5%"],
    "training": TRAINING,
    "methods": {"full": {}, "lora": {}},
}
_BUILT: dict[str, object] = {}


def write_spec(folder: Path, spec: dict, name: str = "spec.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def bench_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from bench.cli import main; sys.exit(main())", *args]


def sweep_process(spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.Popen(
        bench_command("sweep", str(spec), "--out", str(out), "--quiet", *extra),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def ok_records(folder: Path) -> dict[str, Path]:
    return {
        record["run_key"]: folder / f"{record['run_key']}.json"
        for record in read_records(folder)
        if record["status"] == "ok"
    }


def tiny_store(base: Path) -> dict:
    """The TINY sweep, killed after its first record and restarted: {"store", "before_kill", "restart"}."""
    if "store" in _BUILT:
        return _BUILT
    store = base / "tiny-store"
    spec = write_spec(base, TINY, "tiny.yaml")
    process = sweep_process(spec, store)
    deadline = time.monotonic() + 600
    while not ok_records(store) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and anything it started
    process.wait()
    before = {key: (path.stat().st_mtime_ns, path.read_bytes()) for key, path in ok_records(store).items()}
    restart = sweep_process(spec, store)
    output, _ = restart.communicate(timeout=900)
    assert restart.returncode == 0, output
    _BUILT.update(store=store, before_kill=before, restart_output=output)
    return _BUILT


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return tiny_store(tmp_path_factory.getbasetemp())


def test_kill_and_restart_loses_nothing_and_recomputes_only_unfinished_runs(built: dict) -> None:
    store = Store(built["store"])
    before = built["before_kill"]
    assert 1 <= len(before) < 4, "the sweep was killed after its first record and before its last"
    finished = ok_records(store.root)
    assert len(finished) == 4  # full × 2 seeds + lora 0.5% × 2 seeds
    for key, (mtime, content) in before.items():
        assert finished[key].stat().st_mtime_ns == mtime and finished[key].read_bytes() == content, (
            "a finished record was rewritten"
        )
    started = Counter(event["key"] for event in store.events() if event["event"] == "started")
    assert all(started[key] == 1 for key in before), "a finished run was started again"
    assert f"{4 - len(before)} run, {len(before)} already stored, 0 failed" in built["restart_output"]


def test_rerun_of_a_completed_sweep_computes_nothing(built: dict) -> None:
    store = built["store"]
    stamps = {path: path.stat().st_mtime_ns for path in store.glob("*.json")}
    started = time.perf_counter()
    result = run_sweep(parse_spec(TINY), store, progress=False)
    assert result.counts() == Counter(skipped=4)
    assert time.perf_counter() - started < 30
    assert {path: path.stat().st_mtime_ns for path in store.glob("*.json") if path.name not in ("sweep.json",)} == {
        p: m for p, m in stamps.items() if p.name != "sweep.json"
    }


def test_runs_are_logged_to_wandb_offline_with_tags(built: dict) -> None:
    # the report's own run aside (`bench report` logs one per store, id report-<hash>)
    runs = sorted(run for run in (built["store"] / "wandb").glob("offline-run-*") if "-report-" not in run.name)
    keys = {record["run_key"] for record in read_records(built["store"])}
    # one W&B run per cell, by its run key; a cell the kill interrupted may have two folders, its attempt's and its
    # rerun's, of that one run
    assert {run.name.rsplit("-", 1)[1] for run in runs} == keys
    metadata = [
        json.loads(path.read_text())
        for path in (built["store"] / "wandb").glob("offline-run-*/files/wandb-metadata.json")
    ]
    assert metadata or runs  # metadata files are written by wandb-core; the run folders are the contract
    manifest = json.loads((built["store"] / "sweep.json").read_text())
    assert {cell["role"] for cell in manifest["cells"]} == {"final"} and len(manifest["cells"]) == 4


def test_two_workers_on_one_store_never_run_a_cell_twice(tmp_path: Path) -> None:
    """A local sweep and a submitit job array (local cluster) on the same store at the same time.

    The local sweep is paused (SIGSTOP) while it holds its first cell, so the array must run the other cells and
    meet a cell that is locked: both workers run cells whatever the machine's speed.
    """
    spec = {
        **TINY,
        "seeds": [0],
        "budgets": ["0.1%", "0.2%", "0.5%"],
        "methods": {"lora": {}},
        "slurm": {"cluster": "local", "timeout_min": 20},
    }
    path = write_spec(tmp_path, spec)
    store = tmp_path / "store"
    local = sweep_process(path, store)
    wait_for(lambda: any(event["event"] == "started" for event in Store(store).events()), local)
    os.killpg(local.pid, signal.SIGSTOP)
    array = sweep_process(path, store, "--executor", "slurm")
    try:
        wait_for(lambda: len(read_records(store)) >= 2, array)  # ok or failed: the array is past them
    finally:
        os.killpg(local.pid, signal.SIGCONT)
    outputs = [process.communicate(timeout=900)[0] for process in (local, array)]
    assert [process.returncode for process in (local, array)] == [0, 0], outputs
    events = Store(store).events()
    started = Counter(event["key"] for event in events if event["event"] == "started")
    assert len(ok_records(store)) == 3
    assert set(started) == set(ok_records(store)) and set(started.values()) == {1}, started
    assert len({event["pid"] for event in events if event["event"] == "started"}) >= 2, "both sweeps ran cells"


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, seconds: float = 600) -> None:
    """Poll `condition` until it holds; fail if `process` exits first or time runs out."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_learning_rate_is_tuned_on_validation_at_one_seed(tmp_path: Path) -> None:
    spec = parse_spec({**TINY, "methods": {"lora": {}}, "tuning": {"lrs": [1e-4, 3e-3]}})
    result = run_sweep(spec, tmp_path, progress=False)
    assert result.ok and result.counts() == Counter(done=3)  # two lrs at seed 0, then seed 1 at the chosen lr
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    (entry,) = tuning["cells"]
    records = {r["run_key"]: r for r in read_records(tmp_path)}
    scores = {
        point["lr"]: records[point["runs"][0]["run_key"]]["metrics"]["validation"]["accuracy"]
        for point in entry["grid"]
    }
    assert entry["chosen_lr"] == max(scores, key=lambda lr: (scores[lr], -list(scores).index(lr)))
    assert {r["config"]["lr"] for r in records.values() if r["config"]["seed"] == 1} == {entry["chosen_lr"]}
    final = [
        cell
        for cell in json.loads((tmp_path / "sweep.json").read_text())["cells"]
        if cell["role"] in ("final", "tuning+final")
    ]
    assert sorted(cell["config"]["seed"] for cell in final) == [0, 1]
    for record in records.values():  # every phase timed, the phases and the training steps add up to the wall time
        timings, cost = record["timings"], record["cost"]
        assert list(timings) == ["load", "calibrate", "fit", "evaluate", "record"]
        assert (
            0 < cost["train_seconds"] <= timings["fit"] and sum(timings.values()) <= record["wall_time_s"] + 0.01
        )  # laps are rounded to ms
    overhead = statistics.median(r["wall_time_s"] - r["cost"]["train_seconds"] for r in records.values())
    share = statistics.median(
        (r["wall_time_s"] - r["cost"]["train_seconds"]) / r["wall_time_s"] for r in records.values()
    )
    text = summary_text(result)
    assert "per run (median of 3): " in text and f"overhead {overhead:.1f}s (load " in text
    assert f"seconds), {share:.0%} of the wall time" in text


def set_validation_predictions(path: Path, predict: Callable[[dict], Any]) -> None:
    """Rewrite a run's validation predictions as `predict(row)`."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [row | {"prediction": predict(row)} if row["split"] == "validation" else row for row in rows]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_tuning_at_several_seeds_picks_the_best_mean_and_drops_a_rate_that_failed_at_one(tmp_path: Path) -> None:
    spec = parse_spec({**TINY, "methods": {"lora": {}}, "tuning": {"lrs": [1e-4, 3e-3], "seeds": [0, 1]}})
    result = run_sweep(spec, tmp_path, progress=False)
    assert result.ok and result.counts() == Counter(done=4)  # both rates at both seeds; no seed is left to run
    (entry,) = json.loads((tmp_path / "tuning.json").read_text())["cells"]
    store = Store(tmp_path)

    def accuracy(key: str) -> float:
        return store.read(key)["metrics"]["validation"]["accuracy"]

    for point in entry["grid"]:
        assert [run["seed"] for run in point["runs"]] == [0, 1]
        assert point["validation"] == pytest.approx(statistics.mean(accuracy(run["run_key"]) for run in point["runs"]))
    roles = Counter(cell["role"] for cell in json.loads((tmp_path / "sweep.json").read_text())["cells"])
    assert roles == Counter({"tuning": 2, "tuning+final": 2})  # the chosen rate's runs are both seeds' final runs

    # seed 0 alone would pick the first rate (0.9); its mean (0.7) loses to the second rate's steady 0.8
    keys = {(point["lr"], run["seed"]): run["run_key"] for point in entry["grid"] for run in point["runs"]}
    for (lr, seed), score in {(1e-4, 0): 0.9, (1e-4, 1): 0.5, (3e-3, 0): 0.8, (3e-3, 1): 0.8}.items():
        record = store.read(keys[lr, seed])
        record["metrics"]["validation"]["accuracy"] = score
        store.record_path(keys[lr, seed]).write_text(json.dumps(record))
        set_validation_predictions(store.predictions_path(keys[lr, seed]), lambda row: row["label"])  # not collapsed
    common = {"store": str(tmp_path), "group": "tiny", "wandb": spec.wandb, "sweep_started": "", "progress": False}
    assert choose_lrs(spec, store, expand(spec, common))["cells"][0]["chosen_lr"] == 3e-3
    # one class for every validation example at (3e-3, seed 0): that rate collapsed, so it is out despite its mean
    set_validation_predictions(store.predictions_path(keys[3e-3, 0]), lambda row: 1)
    (choice,) = choose_lrs(spec, store, expand(spec, common))["cells"]
    assert choice["chosen_lr"] == 1e-4
    assert [run["status"] for run in choice["grid"][1]["runs"]] == ["collapsed", "ok"]
    assert choice["grid"][1]["status"] == "collapsed" and choice["grid"][1]["validation"] == pytest.approx(0.8)
    set_validation_predictions(store.predictions_path(keys[3e-3, 0]), lambda row: row["label"])
    store.record_path(keys[3e-3, 1]).unlink()  # a rate without a score at one tuning seed is out
    (choice,) = choose_lrs(spec, store, expand(spec, common))["cells"]
    assert choice["chosen_lr"] == 1e-4 and choice["grid"][1] | {"runs": None} == {
        "lr": 3e-3,
        "status": "missing",
        "validation": None,
        "runs": None,
    }
    with pytest.raises(BenchError, match="tuning seed 2 is not one of the seeds"):
        parse_spec({**TINY, "tuning": {"lrs": [1e-4, 3e-3], "seeds": [0, 2]}})
    with pytest.raises(BenchError, match="tuning sets both seed and seeds"):
        parse_spec({**TINY, "tuning": {"lrs": [1e-4, 3e-3], "seed": 0, "seeds": [0, 1]}})


def test_a_task_can_tune_on_a_shorter_schedule_than_its_final_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = {"glue/sst2": {"max_steps": 2, "tuning": {"max_steps": 1}}}
    spec = parse_spec({**TINY, "tasks": tasks, "seeds": [0], "methods": {"lora": {}}, "tuning": {"lrs": [1e-4, 3e-3]}})
    result = run_sweep(spec, tmp_path, progress=True)
    bar = [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.startswith("sweep tiny")][-1]
    assert "3/3" in bar  # the progress total counts the final run the grid could not stand in for
    records = read_records(tmp_path)
    steps = Counter((r["config"]["max_steps"], r["cost"]["steps"]) for r in records)
    assert result.ok and steps == Counter({(1, 1): 2, (2, 2): 1})  # both grid points at 1 step, the final run at 2
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    (final,) = [r for r in records if r["config"]["max_steps"] == 2]
    assert (
        final["config"]["lr"] == tuning["cells"][0]["chosen_lr"]
        and final["run_key"] not in tuning["cells"][0]["chosen_keys"]
    )
    assert tuning["tuning_settings"] == {"minilm-l6 glue/sst2": {"max_steps": 1}}
    roles = Counter(cell["role"] for cell in json.loads((tmp_path / "sweep.json").read_text())["cells"])
    assert roles == Counter({"tuning": 2, "final": 1})  # the seed-0 grid run is not reused as a final run
    with pytest.raises(BenchError, match="no method tunes its learning rate"):
        parse_spec({**TINY, "tasks": tasks})
    with pytest.raises(BenchError, match=r"tasks.glue/sst2.tuning has unknown key\(s\) \['steps'\]"):
        parse_spec({**TINY, "tasks": {"glue/sst2": {"tuning": {"steps": 1}}}, "tuning": {"lrs": [1e-4, 3e-3]}})


def test_the_rate_beyond_a_grid_end_steps_by_the_grid_ratio_at_the_picked_end() -> None:
    def entry(chosen: float | None, *rates: float, status: str = "ok") -> dict:
        return {"chosen_lr": chosen, "grid": [{"lr": lr, "status": status} for lr in rates]}

    assert beyond_the_edge(entry(3e-4, 1e-3, 3e-4, 3e-3)) == 9e-5  # grid order does not matter
    assert beyond_the_edge(entry(3e-3, 3e-4, 1e-3, 3e-3)) == 9e-3
    assert beyond_the_edge(entry(1e-2, 1e-3, 3e-3, 1e-2)) == 0.0333  # 3 significant digits
    assert beyond_the_edge(entry(1e-3, 3e-4, 1e-3, 3e-3)) is None  # inside the grid
    assert beyond_the_edge(entry(3e-4, 3e-4, 1e-3)) is None  # two rates: no inside to find
    # every rate collapsed or failed: unstable throughout, so one step below the low end
    assert beyond_the_edge(entry(None, 1e-3, 3e-3, 1e-2, status="collapsed")) == 0.000333
    unstable = entry(None, 1e-3, 3e-3, 1e-2, status="failed")
    unstable["grid"][0]["status"] = "collapsed"
    assert beyond_the_edge(unstable) == 0.000333
    unstable["grid"][0]["status"] = "missing"  # not run yet: nothing to learn from
    assert beyond_the_edge(unstable) is None


def test_a_pick_at_a_grid_end_gets_a_rate_beyond_it_until_the_pick_is_inside(tmp_path: Path) -> None:
    spec = parse_spec(
        {**TINY, "seeds": [0], "methods": {"lora": {}}, "tuning": {"lrs": [1e-9, 1e-8, 1e-7], "extend": 2}}
    )
    result = run_sweep(spec, tmp_path, progress=False)
    (entry,) = json.loads((tmp_path / "tuning.json").read_text())["cells"]
    scores = [point["validation"] for point in entry["grid"]]
    assert len(set(scores)) == 1  # rates this small leave every prediction as it was, so all points tie
    # a tie goes to the earlier rate, 1e-9: the grid's low end, so 1e-10 is added; 1e-9 still wins and is now inside
    assert [point["lr"] for point in entry["grid"]] == [1e-9, 1e-8, 1e-7, 1e-10]
    assert entry["chosen_lr"] == 1e-9 and result.counts() == Counter(done=4)
    roles = Counter(cell["role"] for cell in json.loads((tmp_path / "sweep.json").read_text())["cells"])
    assert roles == Counter({"tuning": 3, "tuning+final": 1})
    assert run_sweep(spec, tmp_path, progress=False).counts() == Counter(skipped=4)  # a rerun adds nothing


def test_failed_run_is_recorded_and_retried_by_the_next_sweep(tmp_path: Path) -> None:
    spec = parse_spec(
        {**TINY, "seeds": [0], "training": {**TRAINING, "max_steps": 8}, "methods": {"full": {"lr": 1e8}}}
    )  # diverges
    first = run_sweep(spec, tmp_path, progress=False)
    assert not first.ok and first.counts() == Counter(failed=1)
    (record,) = read_records(tmp_path)
    assert record["status"] == "failed" and record["divergence"]["step"] >= 1 and record["config"]["lr"] == 1e8
    second = run_sweep(spec, tmp_path, progress=False, isolate=True)  # in a fresh worker process this time
    assert second.counts() == Counter(failed=1)
    assert sum(event["event"] == "started" for event in Store(tmp_path).events()) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 3}, "unknown key(s) ['epochs']"),
        ({"methods": {"nope": {}}}, "unknown method 'nope'"),
        ({"tasks": ["glue/nope"]}, "unknown task 'glue/nope'"),
        ({"budgets": ["0.5 %%"]}, "malformed budget"),
        ({"budgets": []}, "has a knob (rank) but no budgets"),
        ({"methods": {"full": {"budgets": ["1%"]}}}, "has no knob range"),
        ({"methods": {"lora": {"lrs": [1e-4]}, "full": {"lrs": [1e-5, 1e-4]}}}, "grids differ in size"),
        ({"methods": {"lora": {"lrs": [1e-4]}, "full": {}}}, "would run untuned"),
        ({"training": {"max_steps": "many"}}, "training.max_steps must be int"),
        ({"methods": {"lora": {"options": {"rank": 4}}}}, "has no option 'rank'"),
        ({"seeds": [0, 0]}, "repeat"),
        ({"model": "nosuch"}, "unknown model 'nosuch'"),
        ({"tasks": ["glue/sst2", "glue/sst2"]}, "repeats glue/sst2"),
        ({"training": {"max_steps": 0}}, "max_steps must be"),
        ({"tuning": {"lrs": [1e-4, 1e-3, 1e-2], "extend": -1}}, "tuning.extend is -1"),
        ({"tuning": {"lrs": [1e-4, 1e-3, 1e-2], "extend": True}}, "tuning.extend is True"),
        ({"tuning": {"extend": 1}}, "tuning.extend is set but no method has a learning-rate grid"),
        ({"methods": {"lora": {"seeds_at": {"1%": [0, 1, 2]}}}}, "seeds_at names budgets ['1%'] the method does not"),
        ({"methods": {"lora": {"seeds_at": {"0.5%": [1, 1]}}}}, "repeat"),
        ({"methods": {"lora": {"lrs": [1e-4, 1e-3], "seeds_at": {"0.5%": [1, 2]}}}}, "leaves out tuning seed(s) [0]"),
        ({"methods": {"lora": {"lrs": [1e-4, 1e-3], "seeds": [1]}}}, "lora.seeds leaves out tuning seed(s) [0]"),
    ],
)
def test_bad_specs_fail_before_anything_runs(change: dict, message: str) -> None:
    with pytest.raises(BenchError, match=None) as error:
        parse_spec({**TINY, **change})
    assert message in str(error.value)


def test_cli_reports_a_bad_spec_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = write_spec(tmp_path, {**TINY, "methods": ["lora", "nope"]})
    out = tmp_path / "never"
    result = subprocess.run(
        bench_command("sweep", str(path), "--out", str(out)),
        capture_output=True,
        text=True,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unknown method 'nope'" in result.stderr and "Fix:" in result.stderr
    assert not out.exists()


def test_shipped_profiles_are_valid() -> None:
    profiles = sorted((Path(__file__).resolve().parent.parent / "profiles").glob("*.yaml"))
    assert {"default", "cpu-full", "paper", "plateau", "decoder"} <= {path.stem for path in profiles}
    for path in profiles:
        spec = load_spec(path)
        assert spec.methods and spec.seeds, path.name


def test_interpolated_learning_rates_follow_numpy_in_log_space() -> None:
    anchors = [(10_000, 3e-3), (100_000, 1e-3), (3_500_000, 3e-4)]
    xs, ys = np.log([c for c, _ in anchors]), np.log([lr for _, lr in anchors])
    for count in (5_000, 10_000, 32_000, 320_000, 1_000_000, 3_500_000, 9_000_000):
        expected = float(np.exp(np.interp(np.log(count), xs, ys)))  # numpy clamps at the ends too
        assert interpolate_lr(count, anchors) == pytest.approx(expected, rel=5e-3)
    counts = {("m", "x", "t", str(c)): c for c in (10, 32, 100, 320, 1000, 3500)} | {("full", "x", "t", None): None}
    points = tuning_points(counts, 3)
    assert sorted(counts[g] for g in points if g[0] == "m") == [10, 100, 3500] and ("full", "x", "t", None) in points
    assert tuning_points(counts, None) == set(counts)


def test_sweep_tunes_at_three_budgets_and_interpolates_the_rest(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            **TINY,
            "seeds": [0],
            "budgets": ["0.1%", "0.2%", "0.5%", "1%"],
            "methods": {"lora": {}},
            "tuning": {"lrs": [1e-4, 3e-3], "budgets": 3},
        }
    )
    result = run_sweep(spec, tmp_path, progress=False)
    assert result.ok and result.counts() == Counter(done=7)  # 3 budgets x 2 lrs, then the interpolated budget
    cells = json.loads((tmp_path / "tuning.json").read_text())["cells"]
    (interpolated,) = [e for e in cells if "interpolated_from" in e]
    assert interpolated["budget"] == "0.2%" and [a["budget"] for a in interpolated["interpolated_from"]] == [
        "0.1%",
        "0.5%",
        "1%",
    ]
    anchors = [(a["count"], a["lr"]) for a in interpolated["interpolated_from"]]
    records = [r for r in read_records(tmp_path) if r["config"]["budget"] == "0.2%"]
    assert [r["config"]["lr"] for r in records] == [interpolated["chosen_lr"]]
    assert interpolated["chosen_lr"] == interpolate_lr(records[0]["params"]["requested"], anchors)
    with pytest.raises(BenchError, match=r"tuning\.budgets"):
        parse_spec({**TINY, "tuning": {"lrs": [1e-4, 3e-3], "budgets": 2}})


def test_each_task_is_finished_before_the_next_is_tuned(tmp_path: Path) -> None:
    # at 2 steps the STS-B head still answers one value for every pair, a collapse that leaves the task untuned;
    # 8 steps at 3e-3 spread its validation predictions well past the collapse tolerance
    tasks = {"glue/sst2": {}, "glue/stsb": {"max_steps": 8}}
    spec = parse_spec({**TINY, "tasks": tasks, "methods": {"lora": {"lrs": [1e-4, 3e-3]}}})
    result = run_sweep(spec, tmp_path, progress=False)
    assert result.ok and result.counts() == Counter(done=6), result.untuned
    started = [event["label"] for event in Store(tmp_path).events() if event["event"] == "started"]
    assert [label.split()[2] for label in started] == ["glue/sst2"] * 3 + ["glue/stsb"] * 3, started
    assert [label.split()[3] for label in started[:3]] == ["seed=0", "seed=0", "seed=1"]
    tuning = json.loads((tmp_path / "tuning.json").read_text())
    assert [entry["task"] for entry in tuning["cells"]] == ["glue/sst2", "glue/stsb"]
    roles = Counter(cell["role"] for cell in json.loads((tmp_path / "sweep.json").read_text())["cells"])
    assert roles == Counter({"tuning": 2, "tuning+final": 2, "final": 2})


def test_per_task_training_overrides_apply_to_their_task_only() -> None:
    spec = parse_spec(
        {**TINY, "tasks": {"glue/sst2": {"max_steps": 3}, "glue/stsb": {}}, "methods": {"lora": {"training": {}}}}
    )
    (lora,) = spec.methods
    steps = {task: spec.run_config(lora, "minilm-l6", task, "0.5%", 0, None).max_steps for task in spec.tasks}
    assert steps == {"glue/sst2": 3, "glue/stsb": TRAINING["max_steps"]}
    with pytest.raises(BenchError, match=r"tasks\.glue/sst2 has unknown key"):
        parse_spec({**TINY, "tasks": {"glue/sst2": {"max_stepz": 3}}})


def test_a_learning_rate_per_budget_reaches_each_budget_and_must_cover_them() -> None:
    spec = parse_spec({**TINY, "budgets": ["0.1%", "1%"], "methods": {"lora": {"lr": {"0.1%": 3e-3, "1%": 1e-3}}}})
    (lora,) = spec.methods
    assert [lora.lr_at(b) for b in lora.budgets] == [3e-3, 1e-3]
    with pytest.raises(BenchError, match=r"budgets \['0\.1%'\], but the method's budgets are \['0\.1%', '1%'\]"):
        parse_spec({**TINY, "budgets": ["0.1%", "1%"], "methods": {"lora": {"lr": {"0.1%": 3e-3}}}})


def test_more_seeds_run_only_at_the_budgets_that_ask_for_them(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            **TINY,
            "budgets": ["0.1%", "1%"],
            "methods": {"lora": {"lrs": [1e-4, 3e-3], "seeds_at": {"1%": [0, 1, 2]}}},
        }
    )
    result = run_sweep(spec, tmp_path, progress=False)
    assert result.ok and result.counts() == Counter(done=7)  # 2 budgets x 2 rates at seed 0, then 1 + 2 more seeds
    chosen = {
        entry["budget"]: entry["chosen_lr"] for entry in json.loads((tmp_path / "tuning.json").read_text())["cells"]
    }
    finals = Counter(
        (record["config"]["budget"], record["config"]["seed"])
        for record in read_records(tmp_path)
        if record["config"]["lr"] == chosen[record["config"]["budget"]]
    )
    assert finals == Counter({("0.1%", 0): 1, ("0.1%", 1): 1, ("1%", 0): 1, ("1%", 1): 1, ("1%", 2): 1})


def test_a_method_can_run_its_own_seeds_and_an_untrained_one_needs_no_grid() -> None:
    spec = parse_spec(
        {
            **TINY,
            "model": "smollm2-135m",
            "tasks": ["glue-lm/sst2"],
            "seeds": [0, 1, 2],
            "methods": {"zero-shot": {"seeds": [0]}, "lora": {"lrs": [1e-4, 1e-3], "seeds_at": {"0.5%": [0, 1]}}},
        }
    )
    assert spec.final_seeds("zero-shot", None) == (0,) and spec.final_seeds("lora", "0.5%") == (0, 1)
    with pytest.raises(BenchError, match="full would run untuned"):
        parse_spec({**TINY, "methods": {"full": {}, "lora": {"lrs": [1e-4, 1e-3]}}})


def test_a_full_data_spec_is_refused_on_the_committed_subsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEFT_BENCH_DATA", raising=False)
    spec = parse_spec({**TINY, "full_data": True})
    with pytest.raises(BenchError, match="needs the full training sets"):
        run_sweep(spec, tmp_path / "store", progress=False)
    assert not list((tmp_path / "store").glob("*.json")), "nothing may be written before the refusal"
    with pytest.raises(BenchError, match="full_data must be true or false"):
        parse_spec({**TINY, "full_data": "yes"})
