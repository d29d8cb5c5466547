"""The fake SLURM of tests/fake_slurm behaves as SLURM does where submitit and Lightning look: batch scripts and
arrays, the environment of each task, sacct and squeue, signals, requeue, and submitit's own executor and preemption
handler end to end (no model: each test takes seconds)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import submitit

from tests.fake_slurm import FakeSlurm

TASK_VARIABLES = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_NTASKS", "SLURM_NNODES")


def submit(script: Path, body: str, *options: str) -> str:
    """Write a batch script and submit it; its job id."""
    script.write_text("#!/bin/bash\n" + "".join(f"#SBATCH {option}\n" for option in options) + body)
    done = subprocess.run(
        ["sbatch", "--parsable", str(script)], cwd=script.parent, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_an_array_runs_its_tasks_with_the_environment_srun_gives(fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    report = " ".join(f"{name}=${name}" for name in TASK_VARIABLES)
    job_id = submit(
        tmp_path / "job.sh",
        f"srun --output {tmp_path}/%A_%a_%t.out bash -c 'echo {report} $SLURM_ARRAY_TASK_ID $SLURM_JOB_NODELIST'\n",
        "--array=0-2%2",
        "--nodes=2",
        "--ntasks-per-node=2",
    )
    for index in range(3):
        assert fake_slurm.wait_for(f"{job_id}_{index}", "COMPLETED", "FAILED")["state"] == "COMPLETED"
    lines = sorted(path.read_text().split() for path in tmp_path.glob(f"{job_id}_1_*.out"))
    expected = [(rank, rank % 2, rank // 2, 4, 2) for rank in range(4)]  # two nodes of two tasks
    assert [line[:5] for line in lines] == [
        [f"{name}={value}" for name, value in zip(TASK_VARIABLES, values)] for values in expected
    ]
    assert {tuple(line[5:]) for line in lines} == {("1", "127.0.0.1,127.0.0.2")}
    sacct = subprocess.run(["sacct", "-j", job_id, "-o", "JobID,State", "--parsable2"], capture_output=True, text=True)
    assert sacct.stdout.splitlines() == ["JobID|State"] + [f"{job_id}_{index}|COMPLETED" for index in range(3)]
    assert subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout == ""
    starts = sorted((job["start"], job["end"]) for job in fake_slurm.jobs())
    assert starts[2][0] >= min(starts[0][1], starts[1][1]), "the %2 limit ran a third task before one ended"


def test_a_signal_reaches_the_job_steps_and_a_requeued_job_runs_again(fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    """`scancel --signal=USR2` reaches the task's process (not the batch shell); `scontrol requeue` ends the job
    and runs it again with SLURM_RESTART_COUNT one higher."""
    body = (
        f"echo start $SLURM_RESTART_COUNT >> {tmp_path}/log\n"
        f'srun bash -c \'trap "echo usr2 >> {tmp_path}/log" USR2; '
        f'[ "$SLURM_RESTART_COUNT" = 1 ] && exit 0; while true; do sleep 0.1; done\'\n'
    )
    job_id = submit(tmp_path / "job.sh", body, "--job-name=looping")
    fake_slurm.running(job_id)
    fake_slurm.signal(job_id, "USR2")
    wait_for_text(tmp_path / "log", "usr2")
    assert fake_slurm.job(job_id)["state"] == "RUNNING"
    squeue = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True).stdout
    assert squeue == f"{job_id} looping RUNNING\n"
    fake_slurm.requeue(job_id)
    job = fake_slurm.wait_for(job_id, "COMPLETED", "FAILED")
    assert job["state"] == "COMPLETED" and job["restarts"] == 1
    assert (tmp_path / "log").read_text().splitlines() == ["start 0", "usr2", "start 1"]


def test_a_cancelled_job_ends_and_a_time_limit_signals_before_it_ends_the_job(
    fake_slurm: FakeSlurm, tmp_path: Path
) -> None:
    loop = f"srun bash -c 'trap \"echo warned >> {tmp_path}/log\" USR1; while true; do sleep 0.1; done'\n"
    cancelled = submit(tmp_path / "cancelled.sh", loop)
    fake_slurm.running(cancelled)
    subprocess.run(["scancel", cancelled], check=True)
    assert fake_slurm.wait_for(cancelled, "CANCELLED", "FAILED", seconds=30)["state"] == "CANCELLED"
    timed = submit(tmp_path / "timed.sh", loop, "--time=0:3", "--signal=USR1@2")
    assert fake_slurm.wait_for(timed, "TIMEOUT", "FAILED", seconds=30)["state"] == "TIMEOUT"
    assert (tmp_path / "log").read_text() == "warned\n"


def test_submitit_runs_an_array_and_requeues_a_preempted_job(fake_slurm: FakeSlurm, tmp_path: Path) -> None:
    """submitit's SLURM executor, unchanged: an array of three calls, then a job that submitit's own preemption
    handler requeues (SIGTERM, then USR2 to the task: `scontrol requeue` from inside the job)."""
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit" / "%j", cluster="slurm")
    executor.update_parameters(
        timeout_min=60, slurm_array_parallelism=2
    )  # under 50 min submitit counts a preemption as a time-out
    assert [job.result() for job in executor.map_array(pow, [2, 3, 4], [2, 2, 2])] == [4, 9, 16]
    job = executor.submit(restarts_after_a_wait, str(tmp_path / "started"))
    fake_slurm.running(job.job_id)
    wait_for_text(tmp_path / "started", "0")
    job._interrupt()
    assert job.result() == 1
    assert fake_slurm.job(job.job_id)["restarts"] == 1 and len(fake_slurm.calls("sbatch")) == 2


def restarts_after_a_wait(marker: str) -> int:
    """Waits to be preempted in the job's first run; returns the restart count of the run that finishes."""
    restarts = int(os.environ["SLURM_RESTART_COUNT"])
    Path(marker).write_text(str(restarts))
    while restarts == 0:
        time.sleep(0.1)
    return restarts


def wait_for_text(path: Path, text: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not (path.is_file() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{path} never said {text!r}"
        time.sleep(0.1)
