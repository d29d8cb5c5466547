"""The SLURM jobs of a store's cells: `<store>/jobs.json`, and what the scheduler says of them.

`jobs.json` holds, per cell key, the job that runs it (`job_id` as submitit and sacct name it, `123_4` for task 4 of
array 123; `array_index`; `tasks`, the job's processes; `submitted`, a UTC time; `label`), written under a lock by
every sweep that submits through `cluster: slurm`. A detached sweep also keeps there when it started
(`sweep_started`: failures recorded since then count as settled, as within one sweep), whether it found nothing left
to do (`finished`: the next detached sweep starts afresh and retries failures) and what waits on what (`waiting`).

A job is live while the scheduler has it queued, running or requeued (sacct, read with submitit's parser); one that
sacct does not list yet counts as queued for `UNKNOWN_GRACE_S` after its submission.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.records.store import Store

LEDGER = "jobs.json"
LIVE_STATES = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SUSPENDED",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
}
CRASH_STATES = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
UNKNOWN_GRACE_S = 600  # sacct may list a job some seconds after sbatch returned


class Ledger:
    """`<store>/jobs.json` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.store = Store(root)

    def read(self) -> dict[str, Any]:
        return {"cells": {}, "waiting": {}, **(self.store.read_meta(LEDGER) or {})}

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The ledger's content, to change in place; written back when the block ends, under the ledger's lock."""
        with self.store.lock(LEDGER):
            data = self.read()
            yield data
            self.store.write_meta(LEDGER, data)

    def states(self, keys: list[str] | None = None) -> dict[str, str]:
        """The scheduler's state of the job of each cell (of `keys`, or all) that has one: `UNKNOWN` where sacct does
        not list it, or is not here."""
        cells = {key: entry for key, entry in self.read()["cells"].items() if keys is None or key in keys}
        states = job_states(sorted({entry["job_id"] for entry in cells.values()}))
        return {key: states[entry["job_id"]] for key, entry in cells.items()}

    def live(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The entry of each cell of `keys` whose job is live, with its `state`."""
        cells = self.read()["cells"]
        return {
            key: cells[key] | {"state": state}
            for key, state in self.states(keys).items()
            if is_live(state, cells[key]["submitted"])
        }


def is_live(state: str, submitted: str) -> bool:
    """Queued, running or requeued; or not listed yet by sacct and submitted less than `UNKNOWN_GRACE_S` ago."""
    if state == "UNKNOWN":
        return (datetime.now(UTC) - datetime.fromisoformat(submitted)).total_seconds() < UNKNOWN_GRACE_S
    return state.split()[0] in LIVE_STATES  # sacct writes "CANCELLED by 0"


def job_states(job_ids: list[str]) -> dict[str, str]:
    """sacct's state of each job (submitit's reading of it); every one `UNKNOWN` without sacct."""
    if not job_ids or shutil.which("sacct") is None:
        return dict.fromkeys(job_ids, "UNKNOWN")
    from submitit.slurm.slurm import SlurmInfoWatcher  # submitit loads where jobs are asked about

    arrays = sorted({job.split("_")[0] for job in job_ids})
    command = ["sacct", "-o", "JobID,State", "--parsable2", f"--jobs={','.join(arrays)}"]
    try:
        output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    except (subprocess.SubprocessError, OSError):
        return dict.fromkeys(job_ids, "UNKNOWN")
    info = SlurmInfoWatcher().read_info(output)
    return {job: info.get(job, {}).get("State") or "UNKNOWN" for job in job_ids}
