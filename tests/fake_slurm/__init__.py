"""The fake SLURM of `slurm.py` for tests: `FakeSlurm.install` puts its commands first on PATH (the `fake_slurm`
fixture of tests/conftest.py), and its methods read the jobs' states, wait for them and signal them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fake_slurm import slurm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True)
class FakeSlurm:
    """The fake cluster whose state lives in `state` (FAKE_SLURM_DIR)."""

    state: Path

    @classmethod
    def install(cls, state: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
        """Put the fake commands first on PATH for this process and everything it starts; jobs import this
        checkout's code."""
        monkeypatch.setenv("PATH", f"{HERE}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
        monkeypatch.setenv("FAKE_SLURM_PYTHON", sys.executable)
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
        return cls(state)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job and array task submitted so far, as the shim keeps it (id, state, restarts, ...)."""
        return slurm.jobs() if (self.state / "jobs").is_dir() else []

    def job(self, job_id: str) -> dict[str, Any]:
        """One job or array task, by `N`, `N_I` or its own job id."""
        (job,) = [job for job in self.jobs() if job_id in (job["id"], job["job_id"])]
        return job

    def calls(self, command: str) -> list[list[str]]:
        """The arguments of every call of `command` (sbatch, squeue, ...) so far."""
        path = self.state / "calls.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []
        return [call["args"] for call in map(json.loads, lines) if call["command"] == command]

    def wait_for(self, job_id: str, *states: str, seconds: float = 120) -> dict[str, Any]:
        """Wait until the job is in one of `states`; the job. A RUNNING job is waited for until its step tasks
        (srun's processes, which `scancel --signal` reaches) have started."""
        deadline = time.monotonic() + seconds
        while True:
            job = self.job(job_id)
            if job["state"] in states and (job["state"] != "RUNNING" or job["groups"]["steps"]):
                return job
            assert time.monotonic() < deadline, f"job {job_id} is {job['state']}, not {'/'.join(states)}"
            time.sleep(0.1)

    def running(self, job_id: str, seconds: float = 120) -> dict[str, Any]:
        """Wait until the job's step tasks run; the job."""
        return self.wait_for(job_id, "RUNNING", seconds=seconds)

    def signal(self, job_id: str, name: str = "USR2") -> None:
        """Send a signal to the job's step tasks, as `scancel --signal` (and SLURM before a time limit) does."""
        subprocess.run(["scancel", f"--signal={name}", job_id], check=True)

    def requeue(self, job_id: str) -> None:
        subprocess.run(["scontrol", "requeue", job_id], check=True)

    def stop(self, seconds: float = 60) -> None:
        """Cancel every job still queued or running and wait until they have ended."""
        live = [job["id"] for job in self.jobs() if job["state"] in slurm.LIVE]
        if live:
            subprocess.run(["scancel", *live], check=True)
        for job_id in live:
            self.wait_for(job_id, "CANCELLED", "COMPLETED", "FAILED", "TIMEOUT", seconds=seconds)
