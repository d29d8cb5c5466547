"""Weights & Biases as a sink for runs: one W&B run per cell, logged while it trains, and one per store for its report.

A cell's W&B run has the cell's run key as its id and is opened with `resume="allow"`, so wherever it is logged from
a cell has one run. It opens before the run loads its model (`open_run`). During fit the Trainer logs to it through
Lightning's `WandbLogger`: `train/loss` (and a method's other losses) and `train/lr` every `log_every_n_steps` steps,
and `validation/<metric>` at each point of a validation curve (`eval_every`), all against `trainer/global_step`,
the optimizer steps taken, as the record's curves count them. Once the record is written, `log_record` closes the
run: the final validation scores at the last step, `predictions/test` (a table of the first PREDICTION_ROWS test
predictions), a summary of every metric of both splits (`validation/<metric>`, `test/<metric>`), every cost field
(`cost/<field>`) and the parameter counts (`params/<field>`), and the run's files as artifacts (`wandb_artifacts`).
A failed run's summary holds its error. A rerun of a killed or failed cell resumes the same run: its points follow
the earlier attempt's in the history.

The summary of `validation/<primary metric>` is the curve's last point (`define_metric(summary="last")`): the final
model's score, which the harness tunes learning rates on and the emitted W&B sweeps maximize, rather than the
curve's best point, a model the run did not keep; `test/<metric>` is the final model's test score.

The run config is the record's config with the run key, role, spec, budget label and `lineage`: the commit, dirty
flag and changed files, the model fingerprint, library versions, hardware class and the sha256 of every data file;
Lightning adds the method's resolved `options` (over the requested ones) and its `optim` settings at fit start.
Tags: method, `budget:<label>` (the label the report prints: "100%", "native" or the budget), task, model,
`seed:<n>`, the sweep role and `spec:<name>`. A sweep's runs share one group per invocation, `<spec name>-<start
time>`; `bench run --wandb` runs go to the group `bench-run`.

The report run (`bench report`) holds the plateau curves (seed-mean score against log10 trainable parameters, one
line per method) and the score-against-peak-memory scatter as native W&B charts, the report's tables, and its
figures. Its run id is derived from the store's path, so a store has one report run that each `bench report`
updates (offline: the previous offline copy is replaced).

Mode: offline unless asked, whatever credentials the machine holds. `WANDB_MODE` (online, offline, disabled)
decides when set; otherwise the spec's `wandb: {mode: ...}`; otherwise offline, under `<store>/wandb/`, to upload
later with `wandb sync`. `wandb: {enabled: false}` turns logging off: no W&B run, no `wandb/` folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from bench.records.environment import hardware_class
from bench.records.store import Store
from bench.report.wandb_artifacts import log_artifacts
from bench.run.budget import FIXED_KNOBS, budget_label
from core.errors import BenchError
from tasks import get_task

DEFAULT_PROJECT = "peft-bench"  # the W&B project of runs and reports unless a spec names one
PREDICTION_ROWS = 200  # rows of the per-example prediction table (test split)
MODES = {"online": "online", "offline": "offline", "disabled": "disabled", "dryrun": "offline", "run": "online"}


def mode(settings: dict[str, Any]) -> str:
    """`online`, `offline` or `disabled`: WANDB_MODE if set, else the spec's `mode`, else offline. Credentials never decide."""
    if not settings.get("enabled", True):
        return "disabled"
    requested = (os.environ.get("WANDB_MODE") or settings.get("mode") or "offline").lower()
    if requested not in MODES:
        raise BenchError(f"WANDB_MODE is {requested!r}", "set it to offline, online or disabled, or unset it (offline)")
    return MODES[requested]


def sweep_group(spec_name: str, started: str) -> str:
    """The W&B group of one sweep invocation: `<spec name>-<UTC start, YYYYMMDDTHHMMSS>`."""
    return f"{spec_name}-{re.sub(r'[^0-9T]', '', started)[:15]}"


def _label(config: dict[str, Any]) -> str:
    from methods import get_method

    return budget_label(config["budget"], get_method(config["method"]).knob_name)


def run_name(config: dict[str, Any]) -> str:
    lr = f"-lr{config['lr']:g}" if config.get("lr") is not None else ""
    return f"{config['method']}-{_label(config)}-{config['task'].replace('/', '-')}-s{config['seed']}{lr}"


def run_tags(config: dict[str, Any], role: str, spec_name: str | None) -> list[str]:
    tags = [
        config["method"],
        f"budget:{_label(config)}",
        config["task"],
        config["model"],
        f"seed:{config['seed']}",
        role,
    ]
    return tags + ([f"spec:{spec_name}"] if spec_name else [])


def run_summary(record: dict[str, Any]) -> dict[str, Any]:
    """Every metric of both splits, every cost field, the parameter counts, knob and wall time of an ok record."""
    summary = {
        f"{split}/{name}": value for split, metrics in record["metrics"].items() for name, value in metrics.items()
    }
    summary |= {f"cost/{name}": value for name, value in record["cost"].items()}
    summary |= {f"params/{name}": value for name, value in record["params"].items()}
    return summary | {"knob": record["method"]["knob"]["value"], "wall_time_s": record["wall_time_s"]}


def predictions_table(path: Path, rows: int = PREDICTION_ROWS) -> Any:
    """The first `rows` test predictions of a predictions file as a wandb.Table (nested values as JSON text)."""
    import wandb

    with path.open(encoding="utf-8") as lines:
        predictions = [p for p in map(json.loads, lines) if p["split"] == "test"][:rows]
    columns = list(dict.fromkeys(name for p in predictions for name in p if name != "split"))
    return wandb.Table(columns=columns, data=[[_cell(p.get(name)) for name in columns] for p in predictions])


def _cell(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else json.dumps(value)


@dataclass(frozen=True)
class RunLogging:
    """Where a run goes in W&B: its spec's `wandb` settings, its group, its sweep role and its spec's name."""

    settings: dict[str, Any]
    group: str
    role: str = "final"
    spec: str | None = None


def lineage(env: dict[str, Any], model_fingerprint: str | None, data: dict[str, str] | None) -> dict[str, Any]:
    """Where a run came from, for its W&B config: commit, dirty flag, changed files, model fingerprint, library
    versions and hardware class (from a record's `env`), and the sha256 of each data file."""
    return {
        "commit": env["git"]["commit"],
        "dirty": env["git"].get("dirty"),
        "changed_files": env["git"].get("changed_files", []),
        "model_fingerprint": model_fingerprint,
        "libraries": env["libraries"],
        "hardware": hardware_class(env["hardware"]),
        "data": data,
    }


def open_run(store: Path, target: RunLogging, config: dict[str, Any], run_key: str, origin: dict[str, Any]) -> Any:
    """The W&B run of `run_key` (see the module docstring), with `origin` as its config's `lineage`: the one open in
    this process if it is that run, else started or resumed under `<store>/wandb/`; None when W&B is off."""
    current = mode(target.settings)
    if current == "disabled":
        return None
    import wandb

    if wandb.run is not None and wandb.run.id == run_key:
        return wandb.run
    run = wandb.init(
        project=target.settings.get("project"),
        entity=target.settings.get("entity"),
        id=run_key,
        resume="allow",
        reinit="finish_previous",  # a run an earlier cell of this process left open ends; this cell never logs into it
        group=target.group,
        job_type="run",
        name=run_name(config),
        tags=run_tags(config, target.role, target.spec),
        config={
            **config,
            "run_key": run_key,
            "role": target.role,
            "spec": target.spec,
            "budget_label": _label(config),
            "lineage": origin,
        },
        dir=str(store),
        mode=current,
        settings=wandb.Settings(silent=True),
    )
    run.define_metric("trainer/global_step")
    run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    run.define_metric(f"validation/{get_task(config['task']).primary_metric}", summary="last")
    return run


def log_record(store: Path, target: RunLogging, record: dict[str, Any]) -> None:
    """Close the W&B run of a result record, ok or failed (see the module docstring); nothing when W&B is off."""
    origin = lineage(record["env"], record.get("model", {}).get("fingerprint"), record.get("data", {}).get("files"))
    run = open_run(store, target, record["config"], record["run_key"], origin)
    if run is None:
        return
    log_artifacts(run, store, record)
    if record["status"] != "ok":
        run.summary.update({"error": record["error"]})
        run.finish(exit_code=1)
        return
    final = record["curves"]["validation"][-1]
    row = {f"validation/{name}": value for name, value in final.items() if name != "step"}
    predictions = Store(store).predictions_path(record["run_key"])
    if predictions.is_file():
        row["predictions/test"] = predictions_table(predictions)
    run.log(row | {"trainer/global_step": final["step"]})
    run.summary.update(run_summary(record))
    run.finish()


def report_run_id(store: Path) -> str:
    """The report run's id: the same for every report of one store (by its resolved path)."""
    return "report-" + hashlib.sha256(str(store.resolve()).encode()).hexdigest()[:16]


def _chart_points(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "model": r["config"]["model"],
            "task": r["task"]["name"],
            "method": r["config"]["method"],
            "budget": budget_label(r["params"]["budget"], r["method"]["knob"]["name"]),
            "seed": r["config"]["seed"],
            "params": r["params"]["achieved"],
            "score": 100 * r["metrics"]["test"][r["task"]["primary_metric"]],
            "memory_mb": r["cost"]["peak_memory_bytes"] / 2**20 if r["cost"].get("memory_isolated") else None,
        }
        for r in records
        if math.isfinite(r["metrics"]["test"][r["task"]["primary_metric"]])
    ]


def report_charts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Native W&B charts built from ok records: per (model, task) a plateau line series and a score/memory scatter.

    Methods without a budget axis (full fine-tuning, zero-shot) are horizontal lines at their seed mean across the
    swept range, as in the papers' figures. Records with a failed (non-finite) metric are left out, and the scatter
    holds only cells whose peak memory was measured in isolation (`cost.memory_isolated`), as in the report's Pareto
    figure."""
    import wandb

    points = _chart_points(records)
    by_view: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for point in points:
        by_view[point["model"], point["task"]].append(point)
    charts: dict[str, Any] = {}
    for (model, task), view in sorted(by_view.items()):
        by_method: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for point in view:
            by_method[point["method"]][point["params"]].append(point["score"])
        lines = {point["method"] for point in view if point["budget"] in FIXED_KNOBS.values()}
        swept = (
            sorted({params for method, scores in by_method.items() if method not in lines for params in scores})
            or sorted({params for method in lines for params in by_method[method] if params > 0})
            or [1]
        )
        xs, ys, keys = [], [], []
        for method, scores in sorted(by_method.items()):
            params = sorted(scores)
            if method in lines:
                params, means = [swept[0], swept[-1]], [fmean([s for values in scores.values() for s in values])] * 2
            else:
                means = [fmean(scores[p]) for p in params]
            xs.append([math.log10(p) for p in params])
            ys.append(means)
            keys.append(method)
        title = f"{model} · {task}"
        charts[f"plateau/{model}/{task.replace('/', '-')}"] = wandb.plot.line_series(
            xs=xs,
            ys=ys,
            keys=keys,
            title=f"{title}: test score (points) vs log10 trainable parameters",
            xname="log10 trainable parameters",
        )
        cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for point in view:
            cells[point["method"], point["budget"]].append(point)
        table = wandb.Table(
            columns=["method", "budget", "peak memory (MB)", "score"],
            data=[
                [method, budget, fmean([p["memory_mb"] for p in group]), fmean([p["score"] for p in group])]
                for (method, budget), group in sorted(cells.items())
                if all(p["memory_mb"] is not None for p in group)
            ],
        )
        charts[f"pareto/{model}/{task.replace('/', '-')}"] = wandb.plot.scatter(
            table, "peak memory (MB)", "score", title=f"{title}: test score (points) vs peak memory"
        )
    charts["points"] = (
        wandb.Table(columns=list(points[0]), data=[list(point.values()) for point in points]) if points else None
    )
    return {name: chart for name, chart in charts.items() if chart is not None}


def log_report(
    store: Path,
    settings: dict[str, Any],
    title: str,
    records: list[dict[str, Any]],
    tables: dict[str, Any],
    images: dict[str, Path],
) -> str | None:
    """Log the report as the store's one report run: native charts from `records`, `tables` (DataFrames), `images`."""
    current = mode(settings)
    if current == "disabled":
        return None
    import wandb

    run_id = report_run_id(store)
    for previous in (store / "wandb").glob(f"offline-run-*-{run_id}"):  # one offline copy per store: the newest report
        shutil.rmtree(previous)
    run = wandb.init(
        project=settings.get("project"),
        entity=settings.get("entity"),
        id=run_id,
        resume="allow",
        job_type="report",
        name=f"{title}-report",
        tags=["report", f"spec:{title}"],
        dir=str(store),
        mode=current,
        settings=wandb.Settings(silent=True),
    )
    run.log(
        report_charts(records)
        | {name: wandb.Table(dataframe=frame) for name, frame in tables.items()}
        | {name: wandb.Image(str(path)) for name, path in images.items()}
    )
    run.finish()
    return current


def log_comparison(
    store: Path, settings: dict[str, Any], rows: list[dict[str, Any]], regressed: bool, text: str
) -> str | None:
    """Log a `bench compare` result into the store's report run: its table of `rows` and whether it regressed, with a
    W&B alert (`run.alert`, level ERROR) carrying the Markdown `text` on a regression; the mode, or None when off."""
    current = mode(settings)
    if current == "disabled":
        return None
    import wandb

    run = wandb.init(
        project=settings.get("project"),
        entity=settings.get("entity"),
        id=report_run_id(store),
        resume="allow",
        job_type="report",
        dir=str(store),
        mode=current,
        settings=wandb.Settings(silent=True),
    )
    columns = list(rows[0]) if rows else ["cell"]
    run.log({"compare/table": wandb.Table(columns=columns, data=[[_cell(row[c]) for c in columns] for row in rows])})
    run.summary["compare/regressed"] = regressed
    if regressed:
        run.alert(title="peft-bench regression", text=text[:4000], level=wandb.AlertLevel.ERROR)
    run.finish()
    return current


def log_history(folder: Path, name: str, series: dict[str, dict[str, list[float]]], commits: list[str]) -> str | None:
    """Log a tracked history as one W&B run under `folder`: per quantity, a line chart of every cell against the
    entries (`series[quantity][cell label]`, one value per entry, NaN where absent); the mode, or None when off."""
    current = mode({})
    if current == "disabled":
        return None
    import wandb

    folder.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=DEFAULT_PROJECT,
        name=f"{name}-history",
        job_type="history",
        config={"commits": commits},
        dir=str(folder),
        mode=current,
        settings=wandb.Settings(silent=True),
    )
    entries = list(range(len(commits)))
    run.log(
        {
            f"history/{quantity}": wandb.plot.line_series(
                xs=entries,
                ys=list(lines.values()),
                keys=list(lines),
                title=f"{name}: {quantity} by entry",
                xname="entry",
            )
            for quantity, lines in series.items()
        }
    )
    run.finish()
    return current


def sync_hint(store: Path) -> str | None:
    """The command that uploads offline runs, if there are any not yet synced."""
    runs = sorted((store / "wandb").glob("offline-run-*"))
    if all(any(run.glob("*.wandb.synced")) for run in runs):
        return None
    return f"W&B runs are offline in {store / 'wandb'}; upload them with: wandb sync {store / 'wandb'}/offline-run-*"
