"""`bench eval`: score a saved run on a split of any compatible task, without retraining, and write an eval record.

The eval record goes to `<out>/evals/<run_key>.<task>.<split>.json` (default `<out>`: the run's store). It names the
run it evaluates (`evaluates`) but carries no `run_key`, so stores and reports never take it for a run record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench.records.environment import environment
from bench.run.artifacts import check_compatible, read_record, restore_run
from bench.run.execute import quiet_libraries
from core.errors import BenchError
from core.files import check_writable, write_json_atomic
from tasks import get_task
from tasks.data_source import DataSource


def evaluate_saved(
    record_path: Path,
    task_name: str,
    split: str,
    out_dir: Path | None = None,
    examples: int | None = None,
    data_dir: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate the saved run at `record_path` on `split` of `task_name`; (eval record, where it was written).

    Without `examples`, the split's size limit of the run's config applies when `task_name` is the run's own task
    (so its stored metrics are reproduced) and the whole split otherwise. A run that read a data folder of its own
    (recorded as `<data-dir>`) needs `data_dir` again.
    """
    task = get_task(task_name)
    record = read_record(record_path)
    check_compatible(record, task)
    config = record["config"]
    out_dir = out_dir if out_dir is not None else record_path.parent
    check_writable(out_dir)
    if examples is None and task.name == record["task"]["name"]:
        examples = config[f"{split}_examples"]
    if config["data_dir"] is not None and data_dir is None:
        raise BenchError(
            f"run {record['run_key'][:12]} read its data from a folder its record does not name",
            "pass --data-dir with that folder",
        )
    source = DataSource(data_dir)
    rows = task.load(split, source, examples)
    quiet_libraries()
    record, loaded, module = restore_run(record_path, task)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = task.evaluate(
        module.model.to(device), loaded.tokenizer, rows, config["eval_batch_size"], config["max_length"]
    )
    evaluation = {
        "evaluates": record["run_key"],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": task.name,
        "split": split,
        "examples": result.n_examples,
        "metrics": result.metrics,
        "device": device,
        "method": {"name": record["method"]["name"], "knob": record["method"]["knob"]},
        "model": record["model"],
        "adapter": record["artifacts"]["adapter"],
        "data": source.files,
        "env": environment(),
    }
    path = out_dir / "evals" / f"{record['run_key']}.{task.name.replace('/', '-')}.{split}.json"
    write_json_atomic(path, evaluation)
    return evaluation, path
