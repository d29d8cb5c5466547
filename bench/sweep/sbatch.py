"""A sweep's cells as an sbatch script, for users who submit by hand: `bench sweep SPEC --emit-sbatch FILE`.

The script is a job array over the cells a detached sweep would submit now (bench.sweep.driver): stored cells are
left out, and a tuned (model, task) pair's final runs wait for its tuning runs, so write the script again once those
are done. Task i runs `python -m bench.sweep.task CELLS i`: cell i of `FILE.cells.json`, written beside the script,
run as a sweep worker runs it (under the cell's lock, skipped if stored). The `#SBATCH` lines are those submitit
writes for the spec's `slurm:` section (partition, time, gpus, array parallelism, ...) and the run's nodes and tasks
per node; SLURM's output goes to `<store>/sbatch/`.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.sweep.cells import Cell
from bench.sweep.executors import Dispatched, job_parameters
from bench.sweep.jobs import Ledger
from core.errors import BenchError
from core.files import write_json_atomic, write_text_atomic


class SbatchScript:
    """Collects the cells a detached sweep dispatches, then writes them as an array script (`write`). A cell whose
    job is live in `jobs.json` (a task of such a script writes its job there as it starts) is left out."""

    def __init__(self, path: Path, store: Path, parameters: dict[str, Any], shape: tuple[int, int], name: str) -> None:
        self.path = Path(path)
        self.store = store
        self.ledger = Ledger(store)
        self.parameters = job_parameters(parameters, *shape) | {"name": f"bench-{name}"}
        self.cells: list[Cell] = []
        script_text(self.parameters, 1, "true", store)  # bad parameters fail before anything is planned

    def dispatch(self, function: Callable[[Any], Any], items: list[Cell]) -> list[Dispatched]:
        """Keep the items to write but those a live job runs; each item, new or not (the script has no job yet)."""
        live = self.ledger.live([item.key for item in items])
        self.cells += [item for item in items if item.key not in live]
        return [Dispatched(item, None, item.key not in live) for item in items]

    def write(self) -> Path | None:
        """Write the cells and the script; None (nothing written) when no cell is left to run."""
        if not self.cells:
            return None
        (self.store / "sbatch").mkdir(parents=True, exist_ok=True)  # SLURM writes the logs there, it makes no folder
        cells = self.path.with_name(f"{self.path.name}.cells.json")
        write_json_atomic(cells, [dataclasses.asdict(cell) for cell in self.cells])
        command = f"{shlex.quote(sys.executable)} -u -m bench.sweep.task {shlex.quote(str(cells.resolve()))}"
        text = script_text(self.parameters, len(self.cells), f'{command} "$SLURM_ARRAY_TASK_ID"', self.store)
        header = f"# {len(self.cells)} cell(s) of {self.store}: submit with `sbatch {self.path}` (bench.sweep.sbatch)"
        write_text_atomic(self.path, text.replace("\n", f"\n{header}\n", 1))
        return self.path


def script_text(parameters: dict[str, Any], count: int, command: str, store: Path) -> str:
    """submitit's sbatch script for an array of `count` tasks running `command`; its logs under `<store>/sbatch/`."""
    from submitit.slurm.slurm import SlurmExecutor, _convert_mem, _make_sbatch_string  # submitit's own lines

    names = SlurmExecutor._equivalence_dict()
    converted = {names.get(name, name): value for name, value in _without_prefix(parameters).items()}
    if "mem" in converted:
        converted["mem"] = _convert_mem(converted["mem"])
    try:
        return _make_sbatch_string(command=command, folder=(store / "sbatch").resolve(), map_count=count, **converted)
    except (TypeError, ValueError) as error:
        raise BenchError(
            f"bad slurm parameter ({error})",
            "use submitit's parameter names, e.g. timeout_min, slurm_partition, gpus_per_node",
        ) from None


def _without_prefix(parameters: dict[str, Any]) -> dict[str, Any]:
    """submitit's AutoExecutor names (`slurm_partition`) as its SLURM executor's (`partition`)."""
    return {name.removeprefix("slurm_"): value for name, value in parameters.items()}
