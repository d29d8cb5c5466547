"""`bench export`: a saved run as a merged dense transformers folder, loadable offline with `from_pretrained`.

The folder holds the method's `merged_model()` (`save_pretrained`), the tokenizer, and `peft_bench_run.json` naming the
run it came from. It is written under a staging name and renamed when complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.run.artifacts import read_record, restore_run
from bench.run.execute import quiet_libraries
from core.errors import BenchError
from core.files import check_writable, write_json_atomic
from tasks import get_task

PROVENANCE = "peft_bench_run.json"


def export_merged(record_path: Path, out_dir: Path) -> Path:
    """Write the merged model of the saved run at `record_path` to `out_dir` (new or empty); returns `out_dir`."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BenchError(f"{out_dir} already exists and is not an empty folder", "pass a new folder")
    check_writable(out_dir)
    record = read_record(record_path)
    quiet_libraries()
    record, loaded, module = restore_run(record_path, get_task(record["task"]["name"]))
    merged = module.merged_model()
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)
    loaded.tokenizer.save_pretrained(staging)
    provenance = {key: record[key] for key in ("run_key", "model", "artifacts")}
    write_json_atomic(
        staging / PROVENANCE,
        provenance
        | {
            "method": {"name": record["method"]["name"], "knob": record["method"]["knob"]},
            "task": record["task"]["name"],
        },
    )
    if out_dir.exists():
        out_dir.rmdir()
    staging.rename(out_dir)
    return out_dir
