"""One cell of a sweep as a command, `python -m bench.sweep.task CELLS INDEX`: what each task of the script that
`bench sweep --emit-sbatch` writes runs (bench.sweep.sbatch).

CELLS is the JSON list of cells written beside the script; cell INDEX runs as a sweep worker runs it
(bench.sweep.cells.run_cell: under its lock, skipped if stored). Task 0 of a SLURM array task writes its job into
`<store>/jobs.json`, so `bench status` and later sweeps know it. A cell stopped by a signal (SLURM's warning before
preemption or the time limit) puts its job back in the queue, and resumes from its checkpoint when it runs again. Exit
status 0 when the cell is done or was stored, 1 when it failed, was stopped or another worker holds it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench.records.store import now
from bench.sweep.cells import Cell, run_cell
from bench.sweep.jobs import Ledger
from core.files import read_json


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep.task", description=__doc__.splitlines()[0])
    parser.add_argument("cells", help="the cells file written beside the script")
    parser.add_argument("index", type=int, help="which cell (the array task id)")
    args = parser.parse_args(argv)
    cell = Cell(**read_json(Path(args.cells))[args.index])
    if "SLURM_ARRAY_JOB_ID" in os.environ and os.environ.get("SLURM_PROCID", "0") == "0":
        job_id = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        tasks = int(os.environ.get("SLURM_NTASKS", "1"))
        with Ledger(Path(cell.store)).locked() as ledger:
            ledger["cells"][cell.key] = {"job_id": job_id, "array_index": args.index, "tasks": tasks}
            ledger["cells"][cell.key] |= {"submitted": now(), "label": cell.label}
    outcome = run_cell(cell)
    print(json.dumps(outcome))
    if outcome["status"] == "preempted" and "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_PROCID", "0") == "0":
        _requeue()
    return 0 if outcome["status"] in ("done", "skipped") else 1


def _requeue() -> None:
    """Put this job back in the queue, as submitit does for the jobs it submits: the cell resumes from its checkpoint
    when the job runs again."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
    subprocess.run(["scontrol", "requeue", job], check=True)


if __name__ == "__main__":
    raise SystemExit(main())
