"""What a GPU host must show before sweeps run there (`make gpu-check`, under 10 minutes on one GPU).

    python benchmarks/gpu_check.py

1. step cost in bf16: `step_cost.py`'s table (every method in a fresh process, peak = CUDA's max allocated bytes
   during fit) on SmolLM2-135M and, when the hub answers, on the 1B-class hub model HUB_MODEL;
2. DDP: a short `bench run --strategy ddp --devices N` on every visible GPU, which must write one record and one
   saved state (rank 0 writes);
3. checkpoint and resume: a short `bench run` stopped by SIGUSR1 and resumed must end with the metrics, training
   curve and saved state of the same run never stopped;
4. CPU/GPU agreement: SmolLM2's fp32 predictions on a glue-lm/sst2 slice, computed on the CPU and on the GPU.

Without CUDA it prints one line saying so and exits 0. The exit status is 1 if any part failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import step_cost  # the sibling benchmark, imported from its folder

ROOT = Path(__file__).resolve().parent.parent
HUB_MODEL = "TinyLlama/TinyLlama_v1.1"  # 1.1B LLaMA, open weights
HUB_METHODS = "floor,full,lora,dora,smt,row-sft,svfit,deft"  # step_cost's specs without the q,v SVFit variant, for time
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "offline"}


def step_cost_table(
    model: str, dtype: str, accelerator: str, methods: str | None = None, steps: int = 4, warmup: int = 2
) -> tuple[list[str], list[str]]:
    """step_cost.py's table for `model` (its lines) and the methods that failed to measure."""
    settings = [
        "--model",
        model,
        "--dtype",
        dtype,
        "--accelerator",
        accelerator,
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
    ]
    args = step_cost.parse_args(settings + (["--methods", methods] if methods else []))
    results, lora_by_rank = step_cost.measure_methods(args)
    return step_cost.report(results, lora_by_rank), [name for name, result in results.items() if "error" in result]


def hub_unreachable(repo_id: str) -> str | None:
    """Why the hub cannot serve `repo_id` (None when it can)."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return "the hub is offline (HF_HUB_OFFLINE=1)"
    try:
        HfApi().model_info(repo_id, timeout=10)
    except Exception as error:  # no network, proxy, rate limit: the reason is printed
        return f"the hub did not answer for {repo_id} ({type(error).__name__})"
    return None


def bench_run(out: Path, accelerator: str, *flags: str) -> subprocess.Popen:
    """A short `bench run` of LoRA on MiniLM/SST-2 on `accelerator`, started in its own process."""
    command = [
        *(sys.executable, "-m", "bench.cli", "run", "--method", "lora", "--budget", "0.5%"),
        *("--task", "glue/sst2", "--model", "minilm-l6", "--batch-size", "8", "--train-examples", "160"),
        *("--validation-examples", "32", "--test-examples", "64", "--accelerator", accelerator),
        *flags,
        *("--out", str(out), "--quiet"),
    ]
    environment = {
        **os.environ,
        **OFFLINE_ENV,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }
    return subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finished(process: subprocess.Popen, what: str, status: int = 0) -> str:
    """The process's stderr once it exited with `status`; RuntimeError naming `what` and its last line otherwise."""
    _, stderr = process.communicate()
    if process.returncode != status:
        lines = stderr.strip().splitlines()
        raise RuntimeError(f"{what} failed: {lines[-1] if lines else f'exit code {process.returncode}'}")
    return stderr


def only_record(out: Path) -> dict[str, Any]:
    """The one record in `out`, after checking one record and one saved state exist (rank 0 writes)."""
    records, states = sorted(out.glob("*.json")), sorted(out.glob("*.adapter.safetensors"))
    if len(records) != 1 or len(states) != 1:
        raise RuntimeError(f"{out} holds {len(records)} records and {len(states)} saved states, expected one of each")
    return json.loads(records[0].read_text(encoding="utf-8"))


def ddp_run(out: Path, accelerator: str, devices: int, max_steps: int = 10) -> dict[str, Any]:
    """A short `bench run` under DDP on `devices` devices; its record."""
    flags = ("--max-steps", str(max_steps), "--devices", str(devices), "--strategy", "ddp")
    finished(bench_run(out, accelerator, *flags), "bench run under DDP")
    return only_record(out)


def resume_round_trip(
    out: Path, accelerator: str, stop: signal.Signals = signal.SIGUSR1, max_steps: int = 30
) -> dict[str, Any]:
    """The same `bench run` never stopped, and stopped by `stop` once its first checkpoint is written, then resumed
    by running the command again: both records, and the stopped command's stderr (it must exit with status 75)."""
    whole = only_record(_finished_run(out / "whole", accelerator, max_steps))
    stopped = bench_run(out / "stopped", accelerator, "--max-steps", str(max_steps), "--checkpoint-every", "2")
    checkpoints = out / "stopped" / "checkpoints"
    while not any(checkpoints.glob("*/last.ckpt")):
        if stopped.poll() is not None:
            raise RuntimeError("the run to be stopped ended before its first checkpoint")
        time.sleep(0.05)
    stopped.send_signal(stop)
    message = finished(stopped, f"bench run stopped by {stop.name}", status=75)
    resumed = only_record(_finished_run(out / "stopped", accelerator, max_steps))
    return {"whole": whole, "resumed": resumed, "stopped_message": message}


def _finished_run(out: Path, accelerator: str, max_steps: int) -> Path:
    finished(bench_run(out, accelerator, "--max-steps", str(max_steps)), "bench run")
    return out


def round_trip_differences(trip: dict[str, Any]) -> list[str]:
    """What the resumed run changed against the run never stopped (none expected): metrics, curves, saved state."""
    whole, resumed = trip["whole"], trip["resumed"]
    return [
        name
        for name, (a, b) in {
            "metrics": (whole["metrics"], resumed["metrics"]),
            "train loss curve": (whole["curves"]["train_loss"], resumed["curves"]["train_loss"]),
            "saved state sha256": (whole["artifacts"]["adapter"]["sha256"], resumed["artifacts"]["adapter"]["sha256"]),
        }.items()
        if a != b
    ]


def prediction_agreement(
    devices: tuple[str, str], model: str = "smollm2-135m", task_name: str = "glue-lm/sst2", examples: int = 64
) -> dict[str, Any]:
    """The task's fp32 predictions on the first `examples` test rows on each device: metrics and differing indices."""
    from bench.run.models import load_model
    from tasks import get_task
    from tasks.data_source import DataSource

    task = get_task(task_name)
    rows = task.load("test", DataSource(), examples)
    results = {}
    for device in devices:
        torch.manual_seed(0)  # the same classification head (if any) on both devices
        loaded = load_model(model, task.model_kind, task.num_labels, "float32")
        results[device] = task.evaluate(loaded.model.to(device), loaded.tokenizer, rows, 16, 128)
    first, second = (results[device].predictions for device in devices)
    differing = [a["index"] for a, b in zip(first, second) if a["prediction"] != b["prediction"]]
    return {
        "examples": len(rows),
        "differing": differing,
        "metrics": {device: result.metrics for device, result in results.items()},
    }


def main() -> int:
    if not torch.cuda.is_available():
        print(
            "gpu-check: no CUDA device visible (torch.cuda.is_available() is False); nothing to check on this machine"
        )
        return 0
    gpus, failed = torch.cuda.device_count(), []
    print(f"gpu-check: {gpus} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    started = time.perf_counter()
    for model, methods in (("smollm2-135m", None), (HUB_MODEL, HUB_METHODS)):
        reason = hub_unreachable(model) if model == HUB_MODEL else None
        if reason:
            print(f"\n== step cost, bf16, {model}: skipped, {reason}")
            continue
        print(f"\n== step cost, bf16, {model} ==")
        lines, errors = step_cost_table(model, "bfloat16", "gpu", methods)
        print("\n".join(lines))
        failed += [f"step cost of {name} on {model}" for name in errors]
    print(f"\n== DDP on {gpus} GPU(s) ==")
    with TemporaryDirectory() as out:
        try:
            record = ddp_run(Path(out), "gpu", gpus)
            cost = record["cost"]
            print(
                f"one record and one saved state; test {json.dumps(record['metrics']['test'])}, {cost['steps']} steps, {cost['step_time_median_s']:.3f} s/step"
            )
        except RuntimeError as error:
            print(error)
            failed.append("DDP run")
    print("\n== checkpoint and resume on the GPU ==")
    with TemporaryDirectory() as out:
        try:
            trip = resume_round_trip(Path(out), "gpu")
            differences = round_trip_differences(trip)
            print(
                f"stopped by SIGUSR1 after step {trip['resumed']['resumed'][0]['from_step']}, resumed: "
                + (f"DIFFERS in {', '.join(differences)}" if differences else "same metrics, curve and saved state")
            )
            if differences:
                failed.append("checkpoint/resume round trip")
        except RuntimeError as error:
            print(error)
            failed.append("checkpoint/resume round trip")
    print("\n== fp32 predictions, CPU vs GPU ==")
    agreement = prediction_agreement(("cpu", "cuda"))
    print(
        f"{agreement['examples'] - len(agreement['differing'])}/{agreement['examples']} predictions agree; metrics {json.dumps(agreement['metrics'])}"
    )
    if agreement["differing"]:
        print(f"differing examples: {agreement['differing']}")
        failed.append("CPU/GPU agreement")
    print(
        f"\ngpu-check: {time.perf_counter() - started:.0f} s; "
        + (f"FAILED: {', '.join(failed)}" if failed else "all parts passed")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
