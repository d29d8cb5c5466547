"""A sweep cell that trains on several local processes (DDP, FSDP), run in a process of its own.

Lightning starts the extra processes of a multi-device run by running the command that started it once more per
device. Run inside a sweep, that copies the whole sweep: its copies would queue for the cell lock the first process
holds while it waits for them. So a worker runs such a cell as `python -m bench.sweep.distributed CONFIG STORE KEY`,
the only command Lightning then replicates; the worker keeps the cell's lock, waits for the command and reads the
record that rank 0 wrote. Rank 0 logs the cell to W&B, live and from its record (`bench.sweep.logged`), when the
worker passes the cell's W&B target (`--wandb`). Every process of the cell dies with its parent (the worker, or rank 0
for the other ranks), and the command fails when any rank fails: a rank that raises ends its process, the others fail
in their next collective (or Lightning's launcher stops them), and rank 0 records success only after every rank has
finished evaluating (`bench.run.execute`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.records.store import Store
from bench.report.wandb_logging import RunLogging
from bench.run.config import RunConfig
from bench.run.execute import quiet_libraries
from bench.run.plan import plan
from bench.sweep.executors import die_with_parent
from bench.sweep.logged import execute_logged
from core.errors import BenchError

LOG_NAME = "processes.log"  # the cell's output, under <store>/logs/<key prefix>/


def relaunches(config: RunConfig) -> bool:
    """Whether Lightning would start this run's other processes by running the current command again."""
    import lightning as L  # Lightning loads only when a sweep asks how a run starts its processes
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    quiet_libraries()
    trainer = L.Trainer(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher) and trainer.num_devices > 1


def launch(config: RunConfig, key: str, store: Path, target: RunLogging | None) -> dict[str, Any]:
    """Run the cell `key` in its own processes, logged to W&B at `target`; the record rank 0 wrote (ok, or failed by a
    divergence).

    RuntimeError, naming the log, when the command fails: a rank raised or died."""
    log = store / "logs" / key[:16] / LOG_NAME
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.sweep.distributed", json.dumps(config.to_dict()), str(store), key]
    if target is not None:
        command += ["--wandb", json.dumps(dataclasses.asdict(target))]
    with log.open("w", encoding="utf-8") as output:
        code = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False).returncode
    record = Store(store).read(key)
    if code != 0 or record is None:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        raise RuntimeError(f"the cell's processes failed (exit code {code}): {lines[-1] if lines else ''} (see {log})")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Every rank of the cell runs this; 0 once rank 0 has recorded the run (ok or diverged), 2 on bad input."""
    die_with_parent(os.getppid())
    parser = argparse.ArgumentParser(prog="python -m bench.sweep.distributed", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="the run config as JSON")
    parser.add_argument("out", help="the store")
    parser.add_argument("key", help="the run key the sweep planned")
    parser.add_argument("--wandb", help="where the run goes in W&B, as JSON (bench.report.wandb_logging.RunLogging)")
    args = parser.parse_args(argv)
    try:
        run = plan(RunConfig(**json.loads(args.config)))
        if run.key != args.key:
            raise BenchError(
                "the run key changed since the sweep was planned", "the code or data changed during the sweep; rerun it"
            )
        target = RunLogging(**json.loads(args.wandb)) if args.wandb else None
        execute_logged(run, Path(args.out), target, progress=False)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
