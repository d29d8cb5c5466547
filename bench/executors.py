"""Where cells run: in this process, in N local worker processes, or as a SLURM job array through submitit.

Every executor maps one picklable function over a list of items and yields results as they finish; the locking
and skipping happen inside the function (bench.sweep.run_cell), so executors only dispatch.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from bench.errors import BenchError

EXECUTORS = ("local", "slurm")


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


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

    def map(self, function: Callable[[Any], Any], items: list[Any], crashed: Callable[[Any, BaseException], Any]) -> Iterator[Any]:
        """Yield `function(item)` per item; `crashed(item, error)` for a worker process that died."""
        if self.workers == 1 and not self.isolate:
            for item in items:
                yield function(item)
            return
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_limit_threads, initargs=(threads,), max_tasks_per_child=1 if self.isolate else None
        )
        with pool:
            order = {pool.submit(function, item): index for index, item in enumerate(items)}
            pending = set(order)
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        try:
                            yield future.result()
                        except BrokenProcessPool as error:
                            yield crashed(items[order[future]], error)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise


class SlurmExecutor:
    """A submitit job array (`cluster: slurm`), or the same array as local subprocesses (`cluster: local`).

    `parameters` are submitit's (timeout_min, slurm_partition, gpus_per_node, cpus_per_task, mem_gb,
    slurm_array_parallelism, ...). A multi-device run gets one task per device, so Lightning's SLURM environment
    sets up DDP/FSDP across them.
    """

    def __init__(self, folder: Path, parameters: dict[str, Any], devices_per_run: int = 1) -> None:
        import submitit

        parameters = dict(parameters)
        cluster = parameters.pop("cluster", "slurm")
        if cluster not in ("slurm", "local"):
            raise BenchError(f"slurm.cluster must be slurm or local, got {cluster!r}", "use cluster: local to try the job array on this machine")
        self.executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        defaults = {"timeout_min": 60, "tasks_per_node": devices_per_run}
        if devices_per_run > 1:
            defaults["gpus_per_node"] = devices_per_run
        try:
            self.executor.update_parameters(**(defaults | parameters))
        except (ValueError, TypeError) as error:
            raise BenchError(f"bad slurm parameter ({error})", "use submitit's parameter names, e.g. timeout_min, slurm_partition, gpus_per_node") from None

    def map(self, function: Callable[[Any], Any], items: list[Any], crashed: Callable[[Any, BaseException], Any]) -> Iterator[Any]:
        """Yield `function(item)` per item; `crashed(item, error)` for a job that died without returning."""
        if not items:
            return
        jobs = self.executor.map_array(function, items)
        pending = dict(zip(jobs, items))
        while pending:
            for job in [job for job in pending if job.done()]:
                item = pending.pop(job)
                try:
                    yield job.results()[0]  # a multi-device run has one task per device; task 0 reports
                except Exception as error:  # the job died (time limit, memory, node failure): report it for this item
                    yield crashed(item, error)
            time.sleep(1.0)


def make_executor(name: str, workers: int, store: Path, slurm: dict[str, Any], devices_per_run: int, isolate: bool = False) -> LocalExecutor | SlurmExecutor:
    if name == "local":
        return LocalExecutor(workers, isolate)
    if name == "slurm":
        return SlurmExecutor(store / "submitit", slurm, devices_per_run)
    raise BenchError(f"unknown executor {name!r}", f"use one of: {', '.join(EXECUTORS)}")
