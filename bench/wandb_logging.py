"""Weights & Biases as a sink: one W&B run per benchmark run (through Lightning's WandbLogger), one per report.

Runs are online when an API key is available (`WANDB_API_KEY`, or a `wandb login`) and `WANDB_MODE` is not
`offline`; otherwise offline under `<store>/wandb/`, to upload later with `wandb sync`. `WANDB_MODE=disabled` or
`wandb: {enabled: false}` in the spec turns logging off. Runs are grouped by sweep and tagged with method, budget,
task and seed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.run import RunConfig


def mode() -> str:
    """`online`, `offline` or `disabled`, from WANDB_MODE and the presence of credentials."""
    requested = os.environ.get("WANDB_MODE", "").lower()
    if requested in ("disabled", "offline", "dryrun"):
        return "offline" if requested == "dryrun" else requested
    netrc = Path.home() / ".netrc"
    if os.environ.get("WANDB_API_KEY") or (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")):
        return "online"
    return "offline"


def run_name(config: RunConfig) -> str:
    return f"{config.method}-{config.budget or 'all'}-{config.task.replace('/', '-')}-s{config.seed}" + (f"-lr{config.lr:g}" if config.lr is not None else "")


def run_logger(store: Path, settings: dict[str, Any], group: str, config: RunConfig, key: str, role: str) -> Any | None:
    """A WandbLogger for one run, or None when logging is off."""
    current = mode()
    if not settings.get("enabled", True) or current == "disabled":
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    tags = [config.method, f"budget:{config.budget or 'all'}", config.task, f"seed:{config.seed}", role]
    return WandbLogger(
        project=settings.get("project"),
        entity=settings.get("entity"),
        group=group,
        job_type="run",
        name=run_name(config),
        tags=tags,
        save_dir=str(store),
        offline=current == "offline",
        config={**config.to_dict(), "run_key": key, "role": role},
        settings=wandb.Settings(silent=True),
    )


def finish_run(logger: Any | None, record: dict[str, Any] | None, error: BaseException | None = None) -> None:
    """Put the final metrics and cost into the run's summary (or the error), then close it."""
    if logger is None:
        return
    import wandb

    run = logger.experiment
    if record is not None:
        summary = {f"{split}/{name}": value for split, metrics in record["metrics"].items() for name, value in metrics.items()}
        summary |= {f"params/{name}": value for name, value in record["params"].items() if isinstance(value, int | float)}
        summary |= {f"cost/{name}": value for name, value in record["cost"].items() if isinstance(value, int | float)}
        summary |= {"knob": record["method"]["knob"]["value"], "wall_time_s": record["wall_time_s"]}
        run.summary.update(summary)
    if error is not None:
        run.summary.update({"error": f"{type(error).__name__}: {error}"})
    wandb.finish(exit_code=0 if error is None else 1)


def log_report(store: Path, settings: dict[str, Any], group: str, tables: dict[str, Any], images: dict[str, Path]) -> str | None:
    """Log the report's tables (pandas DataFrames) and figures as one W&B run of job type "report"."""
    current = mode()
    if not settings.get("enabled", True) or current == "disabled":
        return None
    import wandb

    run = wandb.init(
        project=settings.get("project"),
        entity=settings.get("entity"),
        group=group,
        job_type="report",
        name=f"{group}-report",
        dir=str(store),
        mode=current,
        settings=wandb.Settings(silent=True),
    )
    run.log({name: wandb.Table(dataframe=frame) for name, frame in tables.items()} | {name: wandb.Image(str(path)) for name, path in images.items()})
    run.finish()
    return current


def sync_hint(store: Path) -> str | None:
    """The command that uploads offline runs, if there are any not yet synced."""
    runs = sorted((store / "wandb").glob("offline-run-*"))
    if all(any(run.glob("*.wandb.synced")) for run in runs):
        return None
    return f"W&B runs are offline in {store / 'wandb'}; upload them with: wandb sync {store / 'wandb'}/offline-run-*"
