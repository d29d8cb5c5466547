"""Run a sweep: plan its cells, skip what the store holds, run the rest, tune learning rates fairly.

Order of work:
1. every cell is planned (config checked, data read, content key computed) before anything runs (bench.sweep.cells);
2. phase 1 runs the tuning cells (each lr of the grid at each tuning seed, for every method/budget/task) and every
   cell of untuned methods; with `tuning.extend`, a pick at an end of its grid then runs one more rate beyond it;
3. each tuned (method, budget, task) picks its lr by validation score, and budgets not tuned take lrs interpolated
   from those picks: the policy of bench.sweep.tuning; the grid, every score and the choice go to `tuning.json`;
4. phase 2 runs the remaining seeds at the chosen lr (the tuning seeds' runs at that lr are already stored) and
   every seed of the interpolated budgets.

Phases 1 and 2 run for one (model, task) pair after the other, in the spec's order: a long study that stops early
leaves whole results for its first tasks rather than tuning runs of all of them.

Each cell runs under its key's file lock (bench.sweep.cells.run_cell), so two sweeps on one store never run a cell
twice. A failed run is recorded (status "failed") and retried by the next sweep. A cell whose worker died is retried
in a fresh pool, then left for the next sweep (`interrupted`); a failure is never written over an ok record.
Corrupt files found in the store when a sweep starts are moved to `<store>/quarantine/`, and the sweep goes on.

Detached sweeps (`detach`, SLURM only) submit every cell that can run now and return at once: cells already stored,
and cells whose job in `<store>/jobs.json` is still queued or running, are not submitted (bench.sweep.jobs). A phase
whose cells are not all settled yet holds back what depends on it: the learning-rate choice and phase 2 of a tuned
(model, task) pair wait for its tuning cells, and `jobs.json` says what waits on what (`bench status`). Running the
same command again submits the next phase once the one before it has finished, and nothing while cells are still
queued or running. Within one detached sweep, as within one sweep, a failure counts as settled, and a cell whose job
ended without a record (time limit, memory, node failure) is recorded failed; the first detached command after one
that found nothing left to do starts a new sweep, which retries the failures. `sbatch` writes the cells a detached
sweep would submit as an sbatch script instead (bench.sweep.sbatch).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from tqdm import tqdm

from bench.records.store import Store, now
from bench.report import wandb_logging
from bench.sweep.cells import Cell, Phase1, expand, manifest_entry, plan_cells, run_cell
from bench.sweep.executors import LocalExecutor, SlurmExecutor, make_executor
from bench.sweep.jobs import CRASH_STATES, Ledger
from bench.sweep.sbatch import SbatchScript
from bench.sweep.spec import SweepSpec
from bench.sweep.tuning import (
    choose_lrs,
    edge_lrs,
    group_of,
)
from core.errors import BenchError
from core.files import check_writable
from tasks.data_source import DATA_ENV, DataSource


@dataclass
class SweepResult:
    """What happened: outcome per key, the tuning choices, where things are."""

    store: Path
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    untuned: list[str] = field(default_factory=list)
    seconds: float = 0.0
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)  # detached: "model task" -> what waits on what
    script: Path | None = None  # the sbatch script written, if any

    def counts(self) -> Counter:
        return Counter(outcome["status"] for outcome in self.outcomes.values())

    @property
    def ok(self) -> bool:
        return not self.failed and not self.untuned

    @property
    def failed(self) -> list[str]:
        return [
            key
            for key, outcome in self.outcomes.items()
            if outcome["status"] in ("failed", "crashed", "interrupted", "preempted")
        ]


def require_full_data(spec: SweepSpec) -> None:
    """BenchError if the spec needs full training sets but would read the committed subsets."""
    source = DataSource(spec.training.get("data_dir"))
    if source.kind != "data-dir":
        raise BenchError(
            f"spec {spec.name} needs the full training sets, but the data would come from the committed subsets"
            f" ({source.root})",
            f"point {DATA_ENV} (or training.data_dir in the spec) at a folder laid out like tasks/data/ with the full"
            " files",
        )


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    executor: str = "local",
    workers: int = 1,
    progress: bool = True,
    isolate: bool = False,
    detach: bool = False,
    sbatch: Path | None = None,
) -> SweepResult:
    """Run `spec` into the store at `out` (see the module docstring); returns what happened. `detach` submits what
    can run now and returns; `sbatch` writes it as an sbatch script to that file instead."""
    store = Store(out)
    check_writable(store.root)
    if spec.full_data:
        require_full_data(spec)
    started = time.perf_counter()
    detached = detach or sbatch is not None
    common = {
        "store": str(store.root),
        "group": spec.name,
        "wandb": spec.wandb,
        "sweep_started": _sweep_started(store, detach),
        "checkpoint_every": spec.checkpoint_every,
        "progress": progress and workers == 1 and executor == "local" and not isolate and not detached,
    }
    phase1 = expand(spec, common)
    runner = _runner(spec, store, phase1.cells, executor, workers, isolate, detach, sbatch)
    store.lock_kind()  # a bad PEFT_BENCH_LOCK stops the sweep before any cell runs (its probe writes into locks/)
    _quarantine(store)
    result = SweepResult(store=store.root)
    bar = tqdm(
        total=len(phase1.cells) + _finals_expected(spec, phase1),
        desc=f"sweep {spec.name}",
        unit="run",
        disable=not progress or detached,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    listed = {pair: [manifest_entry(c) for c in phase1.part(*pair).cells] for pair in spec.pairs}
    manifest = _manifest(spec, common["sweep_started"])
    with bar:
        sweep = _Sweep(spec, store, common, runner, result, bar, manifest, listed, detached)
        sweep.write_cells()
        for pair in spec.pairs:
            sweep.run_pair(pair, phase1.part(*pair))
    if detach:
        _note_detached(store, result, common["sweep_started"])
    if isinstance(runner, SbatchScript):
        result.script = runner.write()
    result.seconds = time.perf_counter() - started
    return result


def _sweep_started(store: Store, detach: bool) -> str:
    """When this sweep started: now, or for a detached sweep the start of the one it continues."""
    ledger = Ledger(store.root).read() if detach else {}
    return ledger["sweep_started"] if ledger.get("sweep_started") and not ledger.get("finished") else now()


def _note_detached(store: Store, result: SweepResult, sweep_started: str) -> None:
    """Keep in jobs.json when the detached sweep started, whether anything is left, and what waits on what."""
    outstanding = result.waiting or any(o["status"] in ("submitted", "queued") for o in result.outcomes.values())
    with Ledger(store.root).locked() as ledger:
        ledger |= {"sweep_started": sweep_started, "finished": not outstanding, "waiting": result.waiting}


def _runner(
    spec: SweepSpec,
    store: Store,
    cells: list[Cell],
    executor: str,
    workers: int,
    isolate: bool,
    detach: bool,
    sbatch: Path | None,
) -> LocalExecutor | SlurmExecutor | SbatchScript:
    """What runs the cells, given what one run takes (devices per node, nodes): one shape for a whole job array."""
    shapes = {
        (int(c.config["devices"]) if str(c.config["devices"]).isdigit() else 1, c.config["num_nodes"]) for c in cells
    }
    if len(shapes) > 1 and (executor == "slurm" or sbatch is not None):
        raise BenchError(
            f"the sweep's runs differ in devices or num_nodes ({', '.join(f'{d}x{n}' for d, n in sorted(shapes))}):"
            " one SLURM job array has one shape",
            "set devices and num_nodes once, in the spec's top-level training",
        )
    shape = max(shapes, key=lambda devices_nodes: devices_nodes[1], default=(1, 1))
    if sbatch is not None:
        return SbatchScript(sbatch, store.root, spec.slurm, shape, spec.name)
    if detach and (executor != "slurm" or spec.slurm.get("cluster", "slurm") != "slurm"):
        raise BenchError(
            "--detach needs a SLURM cluster to leave the jobs to"
            + (", but slurm.cluster is local (its jobs end with this command)" if executor == "slurm" else ""),
            "run it with --executor slurm and slurm.cluster: slurm in the spec, or drop --detach",
        )
    return make_executor(executor, workers, store.root, spec.slurm, shape, isolate)


def _quarantine(store: Store) -> None:
    """Move the store's corrupt files aside, with a warning for each."""
    for moved in store.quarantine():
        print(
            f"bench: warning: {moved.name} in {store.root} is corrupt; moved to {moved} (its cell is recomputed)",
            file=sys.stderr,
        )


def _manifest(spec: SweepSpec, sweep_started: str) -> dict[str, Any]:
    """What `sweep.json` says besides its cells."""
    return {
        "name": spec.name,
        "digest": spec.digest,
        "spec": spec.source,
        "created_at": sweep_started,
        "tuning_seeds": list(spec.tuning_seeds),
    }


def _finals_expected(spec: SweepSpec, phase1: Phase1) -> int:
    """Phase-2 runs as counted before any pick: every seed but the tuning seeds of each tuned group (its tuning runs
    at the chosen rate are final runs too), every seed of each interpolated group."""
    tuned = sum(len(set(spec.final_seeds(group[0], group[3])) - set(spec.tuning_seeds)) for group in phase1.tuned)
    return tuned + sum(len(spec.final_seeds(group[0], group[3])) for group in phase1.interpolated)


@dataclass
class _Sweep:
    """A sweep under way: what its phases share, and the phases of one (model, task) pair."""

    spec: SweepSpec
    store: Store
    common: dict[str, Any]
    runner: LocalExecutor | SlurmExecutor | SbatchScript
    result: SweepResult
    bar: tqdm
    manifest: dict[str, Any]
    listed: dict[tuple[str, str], list[dict[str, Any]]]  # the cells of sweep.json by (model, task) pair
    detached: bool  # submit what can run now (or write it as a script) and return, rather than run and wait
    choices: list[dict[str, Any]] = field(default_factory=list)  # the cells of tuning.json

    def write_cells(self) -> None:
        """Write `sweep.json` with every pair's cells as listed now."""
        cells = [entry for pair in self.spec.pairs for entry in self.listed[pair]]
        self.store.write_meta("sweep.json", self.manifest | {"cells": cells})

    def list_cells(self, pair: tuple[str, str], cells: list[Cell]) -> None:
        """Make `cells` the pair's cells of `sweep.json`, and write it."""
        self.listed[pair] = [manifest_entry(c) for c in cells]
        self.write_cells()

    def run_pair(self, pair: tuple[str, str], part: Phase1) -> None:
        """Phase 1 of one (model, task) pair, and if it tunes: its grid extensions, its lr picks, its phase 2 (a
        detached sweep stops at the first phase whose cells are not all settled)."""
        settled = self.run_phase(part.cells)
        if not part.tuned:
            return
        if not settled:
            return self.wait(pair, "the learning-rate choice and the final runs", part.cells)
        if not self.extend_grids(pair, part):
            return
        tuning = choose_lrs(self.spec, self.store, part)
        self.choices += tuning["cells"]
        self.store.write_meta("tuning.json", tuning | {"cells": self.choices})
        self.run_finals(pair, part, tuning["cells"])

    def extend_grids(self, pair: tuple[str, str], part: Phase1) -> bool:
        """Run one rate beyond each grid end a group picked, up to `tuning.extend` times (bench.sweep.tuning); whether
        every extension is settled."""
        for _ in range(self.spec.tuning_extend):
            extra = plan_cells(self.spec, edge_lrs(self.spec, self.store, part), "tuning", self.common)
            if not extra:
                break
            part.cells += extra
            self.bar.total += len(extra)
            self.list_cells(pair, part.cells)
            if not self.run_phase(extra):
                self.wait(
                    pair, "the learning-rate choice (after the rates beyond a grid end) and the final runs", extra
                )
                return False
        return True

    def wait(self, pair: tuple[str, str], what: str, cells: list[Cell]) -> None:
        """Note that `what` of a pair waits on those of `cells` that are queued or running."""
        outstanding = [c.key for c in cells if self.result.outcomes[c.key]["status"] in ("submitted", "queued")]
        self.result.waiting[" ".join(pair)] = {"what": what, "on": outstanding}

    def run_finals(self, pair: tuple[str, str], part: Phase1, entries: list[dict[str, Any]]) -> None:
        """Phase 2: every seed of each group at its chosen lr, but for the tuning runs that already are such runs."""
        chosen = {group_of(e): [e["chosen_lr"]] for e in entries if e["chosen_lr"] is not None}
        unusable = [group for group in [*part.tuned, *part.interpolated] if group not in chosen]
        self.result.untuned += [" ".join(str(piece or "all") for piece in group) for group in unusable]
        finals = plan_cells(self.spec, chosen, "final", self.common)
        chosen_runs = {key for e in entries for key in e["chosen_keys"]}
        reused = chosen_runs & {c.key for c in finals}  # the same settings as a final run
        phase2 = [c for c in finals if c.key not in reused]
        # the total counted the tuning seeds' final runs as reused; unusable groups and tuning settings change that
        self.bar.total += len(phase2) - _finals_expected(self.spec, part)
        tuning = [
            dataclasses.replace(c, role="tuning+final" if c.key in reused else "tuning")
            for c in part.cells
            if c.role == "tuning"
        ]
        self.list_cells(pair, [*(c for c in part.cells if c.role != "tuning"), *tuning, *phase2])
        self.run_phase(phase2)

    def run_phase(self, cells: list[Cell]) -> bool:
        """Run `cells` but those stored; those another worker holds are retried at the end, waiting for the lock.
        Detached: submit them instead (`submit`). Whether every cell is settled (always, once run)."""
        cells = [cell for cell in cells if not self.stored(cell)]
        if self.detached:
            return self.submit(cells)
        by_key = {cell.key: cell for cell in cells}
        for attempt in (cells, None):
            if attempt is None:
                attempt = [
                    dataclasses.replace(by_key[key], wait=True)
                    for key, outcome in self.result.outcomes.items()
                    if outcome["status"] == "busy" and key in by_key
                ]
            for outcome in self.runner.map(run_cell, attempt, _crashed, _interrupted):
                self.note(by_key[outcome["key"]], outcome)
        return True

    def stored(self, cell: Cell) -> bool:
        """Whether the cell is done (ok, or failed within this sweep): noted as skipped."""
        done = self.store.is_done(cell.key, self.common["sweep_started"])
        if done:
            self.note(cell, {"key": cell.key, "status": "skipped"})
        return done

    def submit(self, cells: list[Cell]) -> bool:
        """Detached: record as failed each cell whose job ended without a record, submit the others unless a live
        job runs them; whether none was left to run."""
        ledger = getattr(self.runner, "ledger", None)
        states = ledger.states([cell.key for cell in cells]) if ledger is not None and cells else {}
        jobs = ledger.read()["cells"] if states else {}
        lost = [
            cell
            for cell in cells
            if states.get(cell.key, "UNKNOWN").split()[0] in CRASH_STATES
            and jobs[cell.key]["submitted"] >= self.common["sweep_started"]
        ]
        for cell in lost:
            error = RuntimeError(f"job {jobs[cell.key]['job_id']} ended {states[cell.key]} without a record")
            self.note(cell, _crashed(cell, error))
        rest = [cell for cell in cells if cell not in lost]
        for dispatched in self.runner.dispatch(run_cell, rest):
            job_id = getattr(dispatched.job, "job_id", None)
            status = "submitted" if dispatched.new else "queued"
            self.note(dispatched.item, {"key": dispatched.item.key, "status": status, "job": job_id})
        return not rest

    def note(self, cell: Cell, outcome: dict[str, Any]) -> None:
        """Keep a cell's outcome, and move the progress bar past it unless it is to be retried."""
        self.result.outcomes[outcome["key"]] = outcome
        self.result.labels[outcome["key"]] = cell.label
        if outcome["status"] != "busy":
            self.bar.update(1)
            self.bar.set_postfix_str(f"{outcome['status']}: {cell.label}")


def _crashed(cell: Cell, error: BaseException) -> dict[str, Any]:
    """The cell's own process died without returning: record the failure (never over an ok record) for the next
    sweep."""
    store = Store(cell.store)
    if store.write_failure(cell.key, cell.config, error) is None:
        return {"key": cell.key, "status": "skipped"}
    store.log_event(cell.key, "failed", error=f"worker died: {type(error).__name__}: {error}")
    return {"key": cell.key, "status": "crashed", "error": f"{type(error).__name__}: {error}"}


def _interrupted(cell: Cell, error: BaseException) -> dict[str, Any]:
    """A cell that dying workers kept from finishing: nothing is recorded, the next sweep runs it."""
    if Store(cell.store).is_done(cell.key):
        return {"key": cell.key, "status": "skipped"}
    Store(cell.store).log_event(cell.key, "interrupted", error=f"{type(error).__name__}: {error}")
    return {"key": cell.key, "status": "interrupted", "error": f"{type(error).__name__}: {error}"}


def overhead_text(store: Store, keys: list[str]) -> str | None:
    """Where the time of the runs just done went: medians of wall time, training steps, and every other phase."""
    records = [
        record for record in map(store.read, keys) if record and record["status"] == "ok" and "timings" in record
    ]
    if not records:
        return None
    overheads = [record["wall_time_s"] - record["cost"]["train_seconds"] for record in records]
    phases = {
        name: median(
            record["timings"][name] - (record["cost"]["train_seconds"] if name == "fit" else 0) for record in records
        )
        for name in records[0]["timings"]
    }
    parts = ", ".join(f"{'fit set-up' if name == 'fit' else name} {seconds:.1f}" for name, seconds in phases.items())
    return (
        f"per run (median of {len(records)}): {median(r['wall_time_s'] for r in records):.1f}s, of which training"
        f" steps {median(r['cost']['train_seconds'] for r in records):.1f}s and overhead {median(overheads):.1f}s"
        f" ({parts}; seconds), {median(o / r['wall_time_s'] for o, r in zip(overheads, records)):.0%} of the wall time"
    )


def summary_text(result: SweepResult) -> str:
    """The closing summary: counts, failures and where everything is."""
    counts = result.counts()
    store = result.store
    lines = [
        f"sweep finished in {result.seconds:.0f}s: {counts['done']} run, {counts['skipped']} already stored,"
        f" {counts['failed'] + counts['crashed']} failed"
        + (f", {counts['interrupted']} interrupted by a dying worker" if counts["interrupted"] else "")
        + (f", {counts['preempted']} stopped by a signal (checkpointed)" if counts["preempted"] else "")
        + (f", {len(result.untuned)} cell(s) without a usable learning rate" if result.untuned else ""),
        f"records: {store}/<run_key>.json (+ .predictions.jsonl); cells: {store / 'sweep.json'};"
        f" events: {store / 'events.jsonl'}",
    ]
    overhead = overhead_text(
        Store(store), [key for key, outcome in result.outcomes.items() if outcome["status"] == "done"]
    )
    if overhead:
        lines.append(overhead)
    if (store / "tuning.json").is_file():
        lines.append(f"learning-rate grids and choices: {store / 'tuning.json'}")
    for key in result.failed:
        outcome = result.outcomes[key]
        where = {
            "interrupted": "not recorded",
            "preempted": "not recorded, checkpoint kept",
        }.get(outcome["status"], f"record {store / (key + '.json')}")
        lines.append(
            f"{outcome['status'].upper()} {result.labels.get(key, key)}: {outcome.get('error', '')[:300]}"
            f" ({where}; a rerun retries it)"
        )
    for cell in result.untuned:
        lines.append(f"NOT RUN {cell}: every learning rate of its grid failed, so its other seeds were not run")
    hint = wandb_logging.sync_hint(store)
    if hint:
        lines.append(hint)
    lines.append(f"next: bench report {store}")
    return "\n".join(lines)


def detached_text(result: SweepResult, command: str, emitted: bool = False) -> str:
    """What a detached sweep (`emitted`: `--emit-sbatch`) did: cells submitted or written, queued, stored, what
    waits."""
    counts, store = result.counts(), result.store
    arrays = sorted(
        {o["job"].split("_")[0] for o in result.outcomes.values() if o["status"] == "submitted" and o["job"]}
    )
    if emitted:
        lines = [
            f"wrote {result.script} ({counts['submitted']} cell(s), listed in {result.script}.cells.json);"
            f" submit it with: sbatch {result.script}"
            if result.script
            else "wrote no script: no cell can run now"
        ]
    else:
        lines = [f"submitted {counts['submitted']} cell(s)" + (f" as job array {', '.join(arrays)}" if arrays else "")]
    lines[-1] += f"; {counts['queued']} queued or running already, {counts['skipped']} stored" + (
        f", {counts['crashed']} recorded failed (their jobs ended without a record)" if counts["crashed"] else ""
    )
    for pair, wait in result.waiting.items():
        lines.append(
            f"waiting: {pair}: {wait['what']} wait on {len(wait['on'])} cell(s); run `{command}` again once they are done"
        )
    lines += [
        f"NOT RUN {cell}: every learning rate of its grid failed, so its other seeds were not run"
        for cell in result.untuned
    ]
    if counts["queued"] or (counts["submitted"] and not emitted):
        lines.append(f"jobs: {store / 'jobs.json'}; follow them with: bench status {store}")
    elif not result.waiting and not counts["submitted"]:
        lines.append(f"nothing left to run: every cell has a record; next: bench report {store}")
    return "\n".join(lines)
