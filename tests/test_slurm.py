"""Sweeps on a SLURM cluster, through the fake SLURM of tests/fake_slurm and submitit's real SLURM executor: the
commands of README.md's "Running on a SLURM cluster" (a sweep as a job array, a detached sweep phase by phase with
`bench status`, a script for sbatch by hand), a run on two nodes that trains as one node of two processes, and a
cell preempted mid-run that is requeued and resumes from its checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from bench.cli import main
from bench.records.record import read_records
from bench.records.store import Store
from bench.sweep.status import _status
from tests.fake_slurm import FakeSlurm
from tests.test_distributed import TRAINING as DISTRIBUTED
from tests.test_sweep import TINY, ok_records, write_spec

ARRAY = {**TINY, "methods": {"lora": {}}, "slurm": {"cluster": "slurm", "slurm_array_parallelism": 2}}


def bench(capsys: pytest.CaptureFixture, *args: str) -> str:
    """Run a `bench` command in this process; what it printed (it must succeed)."""
    status = main(list(args))
    output = capsys.readouterr()
    assert status == 0, output.out + output.err
    return output.out


def test_a_sweep_runs_as_a_job_array_and_a_second_one_submits_nothing(
    fake_slurm: FakeSlurm, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec, store = write_spec(tmp_path, ARRAY), tmp_path / "store"
    first = bench(capsys, "sweep", str(spec), "--out", str(store), "--executor", "slurm", "--quiet")
    assert "2 run, 0 already stored, 0 failed" in first and len(ok_records(store)) == 2
    (array,) = fake_slurm.calls("sbatch")
    script = Path(array[0]).read_text()
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --ntasks-per-node=1" in script
    jobs = json.loads((store / "jobs.json").read_text())["cells"]
    assert sorted(entry["job_id"] for entry in jobs.values()) == [f"{job['id']}" for job in fake_slurm.jobs()]
    assert {fake_slurm.wait_for(job["id"], "COMPLETED", "FAILED")["state"] for job in fake_slurm.jobs()} == {
        "COMPLETED"
    }
    second = bench(capsys, "sweep", str(spec), "--out", str(store), "--executor", "slurm", "--quiet")
    assert "0 run, 2 already stored" in second and len(fake_slurm.calls("sbatch")) == 1
    bench(capsys, "report", str(store), "--no-wandb")
    assert (store / "report" / "summary.json").is_file()


def test_a_detached_sweep_submits_phase_by_phase_and_never_a_cell_twice(
    fake_slurm: FakeSlurm, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A tuned sweep (one rate at seed 0, then seed 1 at the rate chosen): each command submits what can run now
    and returns; while a cell's job is queued or running, the same command submits nothing."""
    spec, store = write_spec(tmp_path, {**ARRAY, "tuning": {"lrs": [1e-3]}}), tmp_path / "store"
    command = ("sweep", str(spec), "--out", str(store), "--executor", "slurm", "--detach", "--quiet")
    submitted = bench(capsys, *command)
    assert "submitted 1 cell(s) as job array" in submitted
    assert "waiting: minilm-l6 glue/sst2: the learning-rate choice and the final runs wait on 1 cell(s)" in submitted
    (tuning,) = json.loads((store / "jobs.json").read_text())["cells"].values()
    status = bench(capsys, "status", str(store))
    assert f"job {tuning['job_id']}" in status and "0 done" in status and "waiting: minilm-l6 glue/sst2" in status
    assert "1 queued or running already" in bench(capsys, *command) and len(fake_slurm.calls("sbatch")) == 1
    fake_slurm.wait_for(tuning["job_id"], "COMPLETED", "FAILED", seconds=300)
    assert "submitted 1 cell(s)" in bench(capsys, *command) and (store / "tuning.json").is_file()
    (final,) = [job for job in fake_slurm.jobs() if job["id"] != tuning["job_id"]]
    fake_slurm.wait_for(final["id"], "COMPLETED", "FAILED", seconds=300)
    assert "nothing left to run: every cell has a record" in bench(capsys, *command)
    assert len(fake_slurm.calls("sbatch")) == 2 and len(ok_records(store)) == 2
    status = bench(capsys, "status", str(store))
    assert "2 done, 0 running, 0 pending, 0 requeued, 0 failed, 0 not submitted" in status
    assert f"next: bench report {store}" in status


@pytest.mark.slow  # a second detached-sweep scenario (about 20 s)
def test_a_sweep_follows_the_jobs_a_detached_one_left_running(
    fake_slurm: FakeSlurm, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Resuming: a sweep started while a detached one's tuning job runs waits for that job instead of submitting the
    cell again, then runs the final runs itself."""
    spec, store = write_spec(tmp_path, {**ARRAY, "tuning": {"lrs": [1e-3]}}), tmp_path / "store"
    bench(capsys, "sweep", str(spec), "--out", str(store), "--executor", "slurm", "--detach", "--quiet")
    (tuning,) = json.loads((store / "jobs.json").read_text())["cells"].items()
    summary = bench(capsys, "sweep", str(spec), "--out", str(store), "--executor", "slurm", "--quiet")
    assert "2 run, 0 already stored, 0 failed" in summary and len(ok_records(store)) == 2
    assert len(fake_slurm.calls("sbatch")) == 2  # the tuning cell's job, then the final run's
    assert json.loads((store / "jobs.json").read_text())["cells"][tuning[0]] == tuning[1]


@pytest.mark.parametrize(
    ("state", "starts", "status"),
    [
        ("PENDING", 0, "pending"),
        ("RUNNING", 1, "running"),
        ("PENDING", 1, "requeued"),  # it started, and is queued again
        ("REQUEUED", 1, "requeued"),
        ("TIMEOUT", 1, "failed"),  # ended without a record
        ("COMPLETED", 1, "not submitted"),  # without a record: the next sweep submits it
    ],
)
def test_a_cells_status_follows_its_job(state: str, starts: int, status: str) -> None:
    job = {"job_id": "12_0", "submitted": "2026-01-01T00:00:00+00:00"}
    assert _status(None, job, state, starts)[0] == status


@pytest.mark.slow  # the hand-submitted path (10 s)
def test_an_emitted_sbatch_script_runs_the_cells_by_hand(
    fake_slurm: FakeSlurm, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = write_spec(tmp_path, {**ARRAY, "seeds": [0], "slurm": {"timeout_min": 30, "slurm_partition": "cpu"}})
    store, script = tmp_path / "store", tmp_path / "sweep.sbatch"
    written = bench(capsys, "sweep", str(spec), "--out", str(store), "--emit-sbatch", str(script), "--quiet")
    assert f"submit it with: sbatch {script}" in written
    text = script.read_text()
    assert all(line in text for line in ("#SBATCH --array=0-0%1", "#SBATCH --partition=cpu", "#SBATCH --time=30"))
    job_id = subprocess.run(["sbatch", "--parsable", str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert fake_slurm.wait_for(f"{job_id.stdout.strip()}_0", "COMPLETED", "FAILED", seconds=300)["state"] == "COMPLETED"
    assert len(ok_records(store)) == 1 and "1 done" in bench(capsys, "status", str(store))
    again = bench(capsys, "sweep", str(spec), "--out", str(store), "--emit-sbatch", str(script), "--quiet")
    assert "nothing left to run" in again


def test_two_nodes_of_one_process_train_as_one_node_of_two(
    fake_slurm: FakeSlurm, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DDP run on two (fake) nodes of one task each, started by SLURM's srun, against the same run on one node of
    two processes started by Lightning: the same metrics and, bit for bit, the same trained adapter. Both get one
    OpenMP thread per process from the start: Lightning's launcher sets OMP_NUM_THREADS to each process's share of
    the cores, srun leaves it to the job script (a thread count set only after torch loaded rounds differently)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    training = {**DISTRIBUTED, "strategy": "ddp"}
    spec = {**ARRAY, "seeds": [0], "training": training}
    nodes = run_one(capsys, tmp_path / "nodes", spec | {"training": {**training, "devices": 1, "num_nodes": 2}})
    local = run_one(capsys, tmp_path / "local", spec, "--executor", "local")
    assert fake_slurm.jobs()[0]["nodes"] == 2 and (nodes["config"]["num_nodes"], local["config"]["num_nodes"]) == (2, 1)
    assert nodes["cost"]["world_size"] == local["cost"]["world_size"] == 2
    assert nodes["metrics"] == local["metrics"]
    adapters = [load_file(tmp_path / name / record["artifacts"]["adapter"]["file"]) for name, record in
                (("nodes", nodes), ("local", local))]  # fmt: skip
    assert adapters[0].keys() == adapters[1].keys()
    assert all(adapters[0][name].equal(adapters[1][name]) for name in adapters[0])


def run_one(capsys: pytest.CaptureFixture, store: Path, spec: dict[str, Any], *executor: str) -> dict[str, Any]:
    """Sweep a one-cell spec into `store` (through SLURM unless `executor` says otherwise); its record."""
    path = write_spec(store.parent, spec, f"{store.name}.yaml")
    bench(capsys, "sweep", str(path), "--out", str(store), "--quiet", *(executor or ("--executor", "slurm")))
    (record,) = read_records(store)
    return record


def test_a_cell_preempted_mid_run_is_requeued_and_resumes_from_its_checkpoint(
    fake_slurm: FakeSlurm, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """SLURM's warning signal (USR2) reaches one cell's job once that run has written a checkpoint: the run saves at
    its next step boundary, submitit requeues the job, the job runs again and resumes. The sweep ends with every
    record ok, that record says from which step it resumed, and a second sweep command submits nothing."""
    training = {**TINY["training"], "max_steps": 40}
    spec = write_spec(tmp_path, {**ARRAY, "training": training, "checkpoint_every": 2})
    store = tmp_path / "store"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "sweep", str(spec), "--out", str(store), "--executor", "slurm", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (checkpoints := sorted((store / "checkpoints").glob("*/last.ckpt"))):
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()
        time.sleep(0.05)
    key = checkpoints[0].parent.name
    job_id = json.loads((store / "jobs.json").read_text())["cells"][key]["job_id"]
    fake_slurm.signal(job_id, "USR2")
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, out + err
    assert "2 run, 0 already stored, 0 failed" in out
    records = {record["run_key"]: record for record in read_records(store)}
    assert {record["status"] for record in records.values()} == {"ok"}
    (resumed,) = records[key]["resumed"]
    assert 2 <= resumed["from_step"] < 40 and fake_slurm.job(job_id)["restarts"] == 1
    assert [record["resumed"] for other, record in records.items() if other != key] == [[]]
    assert not (store / "checkpoints" / key).exists()
    events = [event["event"] for event in Store(store).events() if event["key"] == key]
    assert events.count("started") == 2 and events[-1] == "done"
    again = bench(capsys, "sweep", str(spec), "--out", str(store), "--executor", "slurm", "--quiet")
    assert "0 run, 2 already stored" in again and len(fake_slurm.calls("sbatch")) == 1
