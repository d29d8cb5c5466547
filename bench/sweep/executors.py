"""Where cells run: in this process, in N local worker processes, or as a SLURM job array through submitit.

Every executor maps one picklable function over a list of items and yields results as they finish; the locking
and skipping happen inside the function (bench.sweep.driver.run_cell), so executors only dispatch.

A local worker that dies (killed, out of memory) breaks its process pool and every cell running in it; the cells
that had not finished go to a fresh pool, up to `POOL_RETRIES` times, then are reported `interrupted` (left for the
next sweep, never recorded as failed). Local workers die with the sweep that started them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.records.store import now
from bench.sweep.jobs import Ledger
from core.errors import BenchError

EXECUTORS = ("local", "slurm")
POOL_RETRIES = 2
PR_SET_PDEATHSIG = 1


def _start_worker(threads: int, parent: int) -> None:
    """A worker's set-up: die with the sweep process `parent`, and share the cores with the other workers."""
    die_with_parent(parent)
    import torch  # torch and submitit load where a worker or a SLURM array needs them: dispatching needs neither

    torch.set_num_threads(threads)


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when `parent` dies: the kernel's parent-death signal on Linux, a watchdog thread
    elsewhere."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


class LocalExecutor:
    """Sequential in this process (workers=1), or a pool of spawned worker processes sharing the cores.

    `isolate` runs every cell in a fresh process: CPU peak memory is the process's peak RSS, so in a long-lived
    process it also holds what earlier runs left in the allocator; a fresh process per run measures each run alone,
    at the cost of the start-up (imports) per run.
    """

    def __init__(self, workers: int = 1, isolate: bool = False) -> None:
        if workers < 1:
            raise BenchError(f"--workers must be at least 1, got {workers}", "pass --workers 1 or more")
        self.workers = workers
        self.isolate = isolate

    def map(
        self,
        function: Callable[[Any], Any],
        items: list[Any],
        crashed: Callable[[Any, BaseException], Any],
        interrupted: Callable[[Any, BaseException], Any],
    ) -> Iterator[Any]:
        """Yield `function(item)` per item; `interrupted(item, error)` for an item a dying worker kept from finishing
        `POOL_RETRIES` times (`crashed` is for executors that know which item's process died; a pool does not)."""
        if self.workers == 1 and not self.isolate:
            for item in items:
                yield function(item)
            return
        pending = list(range(len(items)))
        for _ in range(POOL_RETRIES + 1):
            broken: list[int] = []
            yield from self._map_pool(function, items, pending, broken)
            if not broken:
                return
            pending = broken
        error = BrokenProcessPool(
            f"a worker process died {POOL_RETRIES + 1} times while this cell was running or queued"
        )
        for index in pending:
            yield interrupted(items[index], error)

    def _map_pool(
        self, function: Callable[[Any], Any], items: list[Any], indices: list[int], broken: list[int]
    ) -> Iterator[Any]:
        """Run `items[indices]` in one fresh pool; the indices a broken pool kept from finishing go to `broken`."""
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(threads, os.getpid()),
            max_tasks_per_child=1 if self.isolate else None,
        )
        with pool:
            order = {pool.submit(function, items[index]): index for index in indices}
            pending = set(order)
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            broken.append(order[future])
                            continue
                        yield result
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        broken.sort()


def job_parameters(parameters: dict[str, Any], devices: int, nodes: int) -> dict[str, Any]:
    """submitit's parameters of one run's job: the spec's `slurm:` section (but `cluster`) over the run's shape."""
    defaults = {"timeout_min": 60, "nodes": nodes, "tasks_per_node": devices}
    if devices > 1:
        defaults["gpus_per_node"] = devices
    return defaults | {name: value for name, value in parameters.items() if name != "cluster"}


@dataclass(frozen=True)
class Requeueable:
    """A job's function in submitit's checkpoint protocol: at its time limit (as on preemption) submitit requeues the
    job to call it on the same item again, and the run resumes from its checkpoint (bench.run.checkpoints)."""

    function: Callable[[Any], Any]

    def __call__(self, item: Any) -> Any:
        return self.function(item)

    def checkpoint(self, item: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, item)


@dataclass(frozen=True)
class Dispatched:
    """An item and the job that runs it: submitted now (`new`), or a live job submitted before."""

    item: Any
    job: Any  # a submitit Job
    new: bool


class SlurmExecutor:
    """A submitit job array (`cluster: slurm`), or the same array as local subprocesses (`cluster: local`).

    `parameters` are submitit's (timeout_min, slurm_partition, gpus_per_node, cpus_per_task, mem_gb,
    slurm_array_parallelism, ...). A run gets `nodes_per_run` nodes and one task per device on each, so Lightning's
    SLURM environment sets up DDP/FSDP across them.

    Items are sweep cells (`key`, `label`). On a SLURM cluster every job is written to `<store>/jobs.json`
    (bench.sweep.jobs), and a cell whose job there is still live is not submitted again: its job is followed instead.
    """

    def __init__(
        self, store: Path, parameters: dict[str, Any], devices_per_run: int = 1, nodes_per_run: int = 1
    ) -> None:
        import submitit

        cluster = parameters.get("cluster", "slurm")
        if cluster not in ("slurm", "local"):
            raise BenchError(
                f"slurm.cluster must be slurm or local, got {cluster!r}",
                "use cluster: local to try the job array on this machine",
            )
        self.folder = store / "submitit" / "%j"
        self.executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        self.ledger = Ledger(store) if cluster == "slurm" else None
        self.tasks = devices_per_run * nodes_per_run
        try:
            self.executor.update_parameters(**job_parameters(parameters, devices_per_run, nodes_per_run))
        except (ValueError, TypeError) as error:
            raise BenchError(
                f"bad slurm parameter ({error})",
                "use submitit's parameter names, e.g. timeout_min, slurm_partition, gpus_per_node",
            ) from None

    def dispatch(self, function: Callable[[Any], Any], items: list[Any]) -> list[Dispatched]:
        """Each item's job: its live job in jobs.json, else a new one (the new ones make one array)."""
        if self.ledger is None:
            jobs = self.executor.map_array(Requeueable(function), items)
            return [Dispatched(item, job, True) for item, job in zip(items, jobs)]
        with self.ledger.locked() as ledger:
            live = self.ledger.live([item.key for item in items])
            fresh = [item for item in items if item.key not in live]
            jobs = self.executor.map_array(Requeueable(function), fresh) if fresh else []
            ledger["cells"] |= {
                item.key: {"job_id": job.job_id, "array_index": index, "tasks": self.tasks}
                | {"submitted": now(), "label": item.label}
                for index, (item, job) in enumerate(zip(fresh, jobs))
            }
        followed = [Dispatched(item, self._job(live[item.key]), False) for item in items if item.key in live]
        return followed + [Dispatched(item, job, True) for item, job in zip(fresh, jobs)]

    def _job(self, entry: dict[str, Any]) -> Any:
        """The submitit job of a jobs.json entry, followed from this process (its results land in the same folder)."""
        import submitit

        return submitit.SlurmJob(self.folder, entry["job_id"], range(entry["tasks"]))

    def map(
        self,
        function: Callable[[Any], Any],
        items: list[Any],
        crashed: Callable[[Any, BaseException], Any],
        interrupted: Callable[[Any, BaseException], Any],
    ) -> Iterator[Any]:
        """Yield `function(item)` per item; `crashed(item, error)` for a job that died without returning (one job runs
        one item, so the death is that item's own; `interrupted` is unused)."""
        if not items:
            return
        pending = {dispatched.job: dispatched.item for dispatched in self.dispatch(function, items)}
        while pending:
            for job in [job for job in pending if job.done()]:
                item = pending.pop(job)
                try:
                    yield job.results()[0]  # a multi-device run has one task per device; task 0 reports
                except Exception as error:  # the job died (time limit, memory, node failure): report it for this item
                    yield crashed(item, error)
            time.sleep(1.0)


def make_executor(
    name: str,
    workers: int,
    store: Path,
    slurm: dict[str, Any],
    shape: tuple[int, int] = (1, 1),
    isolate: bool = False,
) -> LocalExecutor | SlurmExecutor:
    """The executor `name`; `shape` is what one run takes: (devices per node, nodes)."""
    devices, nodes = shape
    if name == "local":
        if nodes > 1:
            raise BenchError(
                f"num_nodes {nodes} needs a job on {nodes} machines, which local workers cannot start",
                "run the sweep with --executor slurm (slurm.cluster: slurm), or set num_nodes: 1",
            )
        return LocalExecutor(workers, isolate)
    if name == "slurm":
        return SlurmExecutor(store, slurm, devices, nodes)
    raise BenchError(f"unknown executor {name!r}", f"use one of: {', '.join(EXECUTORS)}")
