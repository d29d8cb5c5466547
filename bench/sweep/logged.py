"""A run executed with its W&B run open, so it shows while it trains (`bench run --wandb`, sweep cells).

Rank 0 opens the cell's W&B run before the run loads its model, the Trainer logs to it during fit (Lightning's
`WandbLogger`), and once the record is written the record's results close it (`wandb_logging.log_record`). Other
ranks log nothing. A run that raises leaves its W&B run open in this process: the caller records the failure, and
logging it reaches the same run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.records.environment import environment
from bench.report import wandb_logging
from bench.run.checkpoints import Preempted
from bench.run.execute import execute, record_config

if TYPE_CHECKING:
    from bench.run.plan import RunPlan


def execute_logged(
    run: RunPlan,
    store: Path,
    target: wandb_logging.RunLogging | None,
    progress: bool = True,
    checkpoint_every: int | None = None,
) -> dict[str, Any] | None:
    """`execute(run, store)`, logged to W&B live and then from its record when `target` is given and W&B is on."""
    # Lightning loads when a run executes (see bench.run.execute)
    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities import rank_zero_only

    live = None
    if target is not None and rank_zero_only.rank == 0:
        origin = wandb_logging.lineage(environment(), run.fingerprint.value, run.source.files)
        live = wandb_logging.open_run(store, target, record_config(run), run.key, origin)
    loggers = [WandbLogger(experiment=live)] if live is not None else []
    try:
        record = execute(run, store, progress=progress, loggers=loggers, checkpoint_every=checkpoint_every)
    except (Preempted, SystemExit):  # stopped by a signal; SystemExit: submitit requeued the job and exits
        if live is not None:  # W&B shows the run preempted; the resumed run continues it under the same id
            live.mark_preempting()
            live.finish()
        raise
    if record is not None and target is not None:
        wandb_logging.log_record(store, target, record)
    return record
