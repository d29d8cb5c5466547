"""`bench status STORE`: where each cell of a store's sweep stands, read from the store (records, `events.jsonl`,
`jobs.json`) and the scheduler (sacct, bench.sweep.jobs).

A cell is done (its record is ok), running, pending, requeued (its job is queued again after it started: preempted,
or requeued at its time limit), failed (a failed record, or a job that ended without a record), or not submitted.
What a detached sweep left waiting (a tuned pair's learning-rate choice and final runs wait on its tuning cells) is
listed after the cells.
"""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from typing import Any

from bench.records.store import Store
from bench.run.checkpoints import saved_checkpoint
from bench.sweep.jobs import CRASH_STATES, Ledger, is_live
from core.errors import BenchError

STATUSES = ("done", "running", "pending", "requeued", "failed", "not submitted", "unknown")


def cell_statuses(store: Store) -> list[dict[str, Any]]:
    """Each cell of the store's `sweep.json`: key, label, job id, scheduler state, status and a detail."""
    manifest = store.read_meta("sweep.json")
    if manifest is None:
        raise BenchError(f"{store.root} holds no sweep.json: no sweep ran into it", "pass the --out of a bench sweep")
    ledger = Ledger(store.root)
    jobs, states = ledger.read()["cells"], ledger.states()
    started: defaultdict[str, list[str]] = defaultdict(list)  # key -> when it started
    for event in store.events():
        if event["event"] == "started":
            started[event["key"]].append(event["time"])
    rows = []
    for cell in manifest["cells"]:
        key, job = cell["key"], jobs.get(cell["key"])
        starts = sum(when >= job["submitted"] for when in started[key]) if job else 0  # under this job
        status, detail = _status(store.read(key), job, states.get(key, "UNKNOWN"), starts)
        if status != "done" and saved_checkpoint(store.root, key) is not None:
            detail = "; ".join(filter(None, (detail, "a checkpoint is kept: its next run resumes from it")))
        rows.append(
            {"key": key, "label": cell["label"], "job": job and job["job_id"], "status": status, "detail": detail}
        )
    return rows


def _status(record: dict[str, Any] | None, job: dict[str, Any] | None, state: str, starts: int) -> tuple[str, str]:
    """(status, detail) of one cell from its record, its job, the job's state and how often it started since."""
    if record is not None and record["status"] == "ok":
        return "done", ""
    if job is not None and is_live(state, job["submitted"]):
        if state.startswith("REQUEUE") or (starts and state in ("PENDING", "UNKNOWN")):
            return "requeued", f"job {state.lower()} after {starts} start(s)"
        if state == "PENDING" or (state == "UNKNOWN" and not starts):
            return "pending", ""
        return "running", f"restarted {starts - 1} time(s)" if starts > 1 else ""
    if record is not None:
        return "failed", record.get("error") or ""
    if job is not None and state.split()[0] in CRASH_STATES:
        return "failed", f"job ended {state} without a record (the next sweep retries it)"
    if job is not None and state == "UNKNOWN":
        return "unknown", "the scheduler does not list its job and it left no record"
    return "not submitted", ""


def status_text(store: Store) -> str:
    """The cells one per line, the counts, what waits on what, and what to do next."""
    rows = cell_statuses(store)
    width = max((len(row["label"]) for row in rows), default=0)
    lines = [
        f"{store.root}: {len(rows)} cell(s) in sweep.json"
        + ("" if shutil.which("sacct") else "; sacct is not on this machine, so job states are unknown")
    ]
    for row in rows:
        job = f"job {row['job']}" if row["job"] else ""
        lines.append(f"{row['status']:<13} {row['label']:<{width}}  {job}  {row['detail'][:160]}".rstrip())
    counts = Counter(row["status"] for row in rows)
    lines.append(
        ", ".join(f"{counts[status]} {status}" for status in STATUSES if counts[status] or status != "unknown")
    )
    by_key = {row["key"]: row["status"] for row in rows}
    waiting = Ledger(store.root).read()["waiting"]
    for pair, wait in waiting.items():
        still = Counter(by_key.get(key, "not listed") for key in wait["on"])
        open_ = sum(still[status] for status in ("running", "pending", "requeued"))
        lines.append(
            f"waiting: {pair}: {wait['what']} wait on {len(wait['on'])} cell(s)"
            f" ({', '.join(f'{n} {status}' for status, n in sorted(still.items()))})"
            + ("" if open_ else "; they have finished: run the detached sweep command again to submit what follows")
        )
    if counts["done"] == len(rows) and not waiting:
        lines.append(f"next: bench report {store.root}")
    return "\n".join(lines)
