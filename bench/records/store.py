"""The results store: a folder of run records keyed by content, with a lock per key and an event log.

Layout of a store folder:

    <run_key>.json                   one record per run (status "ok", or "failed" with its error and config)
    <run_key>.predictions.jsonl      per-example predictions of an ok run
    <run_key>.adapter.safetensors    what an ok run trained (bench.run.artifacts);  evals/  what `bench eval` writes
    sweep.json                       the last sweep's spec and cells (key, role, config)
    tuning.json                      learning-rate grids and the chosen values (tuned sweeps)
    events.jsonl                     a line per event (host, pid, time): started, done, failed, interrupted, quarantined
    locks/<run_key>.lock             held while a worker runs that key (flock);  locks/<run_key>/  the same (lock files)
    quarantine/                      files a sweep found corrupt, moved aside (an event names each)
    logs/<run_key[:16]>/             Lightning CSV logs;  wandb/  W&B runs;  report/  what `bench report` writes

A run is done when its record has status "ok". A failed record is retried by the next sweep; within one sweep it
counts as done, so a second worker does not repeat a failure the first one just recorded. A failure is never
written over an ok record. Reading a corrupt file (truncated, not JSON, an unknown schema version) raises a
BenchError naming it.

A worker runs a key only while it holds the key's lock (bench.records.locks), so sweeps and SLURM arrays on several
nodes can share a store. The lock is a flock where a probe flock in locks/ works, else lock files; the environment
variable PEFT_BENCH_LOCK=flock|file overrides the probe, and every worker on a store must use the same kind (set
`file` where the filesystem enforces flock per node only). A lock file with a dead owner on this host, or whose
heartbeat (its mtime, refreshed every 5 s) is older than 60 s from another host, is broken; this assumes the clocks of
the nodes and the file server agree within 30 s, and a holder on another host that stalls for about a minute (a
suspended job, a hung filesystem) can lose its lock.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import Timeout

from bench.records.environment import environment
from bench.records.locks import KeyLock, key_lock, lock_kind
from bench.records.record import RUN_KEY_NAME, SCHEMA_VERSION, check_record, is_record, read_records, write_record
from core.files import CorruptFile, read_json, write_json_atomic


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Store:
    """A results folder (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def record_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def predictions_path(self, key: str) -> Path:
        return self.root / f"{key}.predictions.jsonl"

    def read(self, key: str) -> dict[str, Any] | None:
        path = self.record_path(key)
        if not path.is_file():
            return None
        data = read_json(path)
        if not is_record(data):
            raise CorruptFile(path, "not a run record")
        return check_record(path, data)

    def is_done(self, key: str, sweep_started: str | None = None) -> bool:
        """An ok record exists, or a failed one was written after `sweep_started` (by this sweep)."""
        record = self.read(key)
        if record is None:
            return False
        if record.get("status") == "ok":
            return True
        return sweep_started is not None and record.get("created_at", "") >= sweep_started

    def lock_kind(self) -> str:
        """The kind of the store's locks, "flock" or "file" (bench.records.locks); BenchError if PEFT_BENCH_LOCK is bad."""
        return lock_kind(self.root / "locks")

    def lock(self, key: str) -> KeyLock:
        return key_lock(self.root / "locks", key)

    def try_lock(self, key: str, wait: bool) -> KeyLock | None:
        """The key's lock, acquired (blocking if `wait`), or None if another worker holds it."""
        lock = self.lock(key)
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            return None
        return lock

    def write_failure(
        self, key: str, config: dict[str, Any], error: BaseException, **details: Any
    ) -> dict[str, Any] | None:
        """Record `error` (and `details`, such as a divergence) as the key's failed run, unless the key already has an
        ok record: then nothing is written and None is returned."""
        if (self.read(key) or {}).get("status") == "ok":
            return None
        record = {
            "schema_version": SCHEMA_VERSION,
            "run_key": key,
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exception(error)[-8:],
            "created_at": now(),
            "config": config,
            "env": environment(),
            **details,
        }
        write_record(self.record_path(key), record)
        return json.loads(self.record_path(key).read_text(encoding="utf-8"))

    def quarantine(self) -> list[Path]:
        """Move every corrupt JSON file of the store (records, sweep.json, tuning.json) to quarantine/; their new paths.

        A readable record with another schema version is left in place: it is not corrupt, and its key (which hashes
        the schema version) never collides with this version's records."""
        moved = []
        for path in sorted(self.root.glob("*.json")):
            try:
                data = read_json(path)
                other_version = isinstance(data, dict) and data.get("schema_version") not in (None, SCHEMA_VERSION)
                if (RUN_KEY_NAME.fullmatch(path.stem) or is_record(data)) and not other_version:
                    check_record(path, data)
            except CorruptFile as error:
                target = self.root / "quarantine" / path.name
                target.parent.mkdir(exist_ok=True)
                shutil.move(path, target)
                self.log_event(path.stem, "quarantined", file=path.name, reason=error.problem)
                moved.append(target)
        return moved

    def log_event(self, key: str, event: str, **details: Any) -> None:
        """Append one line to events.jsonl (a single write on an O_APPEND file: lines never interleave)."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = (
            json.dumps(
                {"time": now(), "host": socket.gethostname(), "pid": os.getpid(), "key": key, "event": event, **details}
            )
            + "\n"
        )
        with open(self.root / "events.jsonl", "a", encoding="utf-8") as stream:
            stream.write(line)

    def events(self) -> list[dict[str, Any]]:
        path = self.root / "events.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def records(self, status: str | None = "ok") -> list[dict[str, Any]]:
        """Every record in the store, or only those with `status`."""
        return [record for record in read_records(self.root) if status is None or record.get("status") == status]

    def write_meta(self, name: str, data: Any) -> Path:
        path = self.root / name
        write_json_atomic(path, data)
        return path

    def read_meta(self, name: str) -> Any:
        """The content of store file `name` (None if absent); BenchError naming it if it is corrupt."""
        path = self.root / name
        if not path.is_file():
            return None
        data = read_json(path)
        if not isinstance(data, dict):
            raise CorruptFile(path, f"expected a JSON object, found {type(data).__name__}")
        return data
