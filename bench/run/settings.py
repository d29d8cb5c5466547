"""The settings of a run, checked before any model loads: numbers in range, machine settings torch and Lightning accept.

The accepted names live here without importing torch or Lightning, so `bench --help` lists them at once;
tests/test_bad_input.py checks them against Lightning's own registries.
"""

from __future__ import annotations

import math
from typing import Any

from core.errors import BenchError

DTYPES = ("float32", "bfloat16", "float16")
PRECISIONS = (
    "32-true",
    "64-true",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "transformer-engine",
    "transformer-engine-float16",
)
ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps", "tpu")
STRATEGIES = (
    "auto",
    "single_device",
    "ddp",
    "ddp_spawn",
    "ddp_fork",
    "ddp_notebook",
    "ddp_find_unused_parameters_false",
    "ddp_find_unused_parameters_true",
    "ddp_spawn_find_unused_parameters_false",
    "ddp_spawn_find_unused_parameters_true",
    "ddp_fork_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true",
    "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true",
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
    "deepspeed_stage_3_offload_nvme",
    "fsdp",
    "fsdp_cpu_offload",
    "xla",
    "xla_debug",
    "single_xla",
    "single_tpu",
)
COUNTS = ("max_steps", "batch_size", "eval_batch_size", "max_length", "calibration_batches", "num_nodes")  # at least 1
LIMITS = (
    "train_examples",
    "validation_examples",
    "test_examples",
    "threads",
    "eval_every",
)  # None (all / default / at the end only) or at least 1
MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range
CHOICES = {"dtype": DTYPES, "precision": PRECISIONS, "accelerator": ACCELERATORS, "strategy": STRATEGIES}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_settings(values: dict[str, Any]) -> None:
    """BenchError (naming the setting and its accepted range) for the first out-of-range run setting in `values`."""
    for name in COUNTS:
        if not _integer(values[name]) or values[name] < 1:
            raise BenchError(
                f"{name} must be a whole number of at least 1, got {values[name]!r}", f"pass {_flag(name)} 1 or more"
            )
    for name in LIMITS:
        if values[name] is not None and (not _integer(values[name]) or values[name] < 1):
            raise BenchError(
                f"{name} must be at least 1, got {values[name]!r}",
                f"omit {_flag(name)} to use the default (all examples, all threads, validation at the end only)",
            )
    for name in ("group_by_length", "mask_prompt"):
        if not isinstance(values[name], bool):
            raise BenchError(
                f"{name} must be true or false, got {values[name]!r}", f"pass {_flag(name)} or --no-{_flag(name)[2:]}"
            )
    if not _integer(values["head_probe_steps"]) or values["head_probe_steps"] < 0:
        raise BenchError(
            f"head_probe_steps must be a whole number of at least 0, got {values['head_probe_steps']!r}",
            "pass e.g. --head-probe-steps 100, or 0 to calibrate through the new head as initialised",
        )
    if not _integer(values["seed"]) or not 0 <= values["seed"] <= MAX_SEED:
        raise BenchError(f"seed must be a whole number in 0..{MAX_SEED}, got {values['seed']!r}", "pass e.g. --seed 0")
    if values["lr"] is not None and (not _number(values["lr"]) or values["lr"] <= 0):
        raise BenchError(
            f"learning rate must be a finite number above 0, got {values['lr']!r}",
            "pass e.g. --lr 3e-4, or omit it for the method's default",
        )
    if values["weight_decay"] is not None and (not _number(values["weight_decay"]) or values["weight_decay"] < 0):
        raise BenchError(
            f"weight_decay must be a finite number of at least 0, got {values['weight_decay']!r}",
            "pass e.g. --weight-decay 0.01",
        )
    if values["warmup_ratio"] is not None and (
        not _number(values["warmup_ratio"]) or not 0 <= values["warmup_ratio"] <= 1
    ):
        raise BenchError(
            f"warmup_ratio must be a fraction in [0, 1], got {values['warmup_ratio']!r}",
            "pass e.g. --warmup-ratio 0.06",
        )
    for name, allowed in CHOICES.items():
        if values[name] not in allowed:
            raise BenchError(
                f"{name} {values[name]!r} is not one torch/Lightning accepts", f"use one of: {', '.join(allowed)}"
            )
    if not _devices_ok(str(values["devices"])):
        raise BenchError(
            f"devices {values['devices']!r} is not a device count or list",
            "pass auto, a count such as 1, -1 (all), or device indices such as 0,1",
        )


def _devices_ok(text: str) -> bool:
    """Lightning's forms: auto, a count (-1: all), or a comma-separated list of device indices."""
    if text in ("auto", "-1"):
        return True
    if text.isdigit():
        return int(text) >= 1
    parts = [part.strip() for part in text.split(",") if part.strip()]
    return bool(parts) and "," in text and all(part.isdigit() for part in parts) and len(set(parts)) == len(parts)


def check_machine(
    accelerator: str, devices: str, strategy: str = "auto", precision: str = "32-true", num_nodes: int = 1
) -> None:
    """BenchError when this machine or its libraries cannot run the machine settings asked for: an accelerator it
    lacks, more devices than it has, a strategy or precision whose package is missing or that needs other hardware.

    Called where the run executes (a SLURM job plans on the login node and runs on a GPU node), before any weight
    loads. Availability is Lightning's own test: the settings are handed to a Trainer built with no model, which
    raises what the real one would; "auto" and "cpu" are always available."""
    # Lightning loads only here: `bench --help` and planning import this module without it
    import lightning as L
    from lightning.pytorch.accelerators import AcceleratorRegistry

    def available(name: str) -> bool:
        try:
            return AcceleratorRegistry.get(name).is_available()
        except ImportError:  # e.g. tpu without torch_xla
            return False

    names = {"gpu": ("cuda", "mps"), "cuda": ("cuda",), "mps": ("mps",), "tpu": ("tpu",)}.get(accelerator, ())
    usable = [name for name in names if available(name)]
    if names and not usable:
        here = ", ".join(["cpu", *(name for name in ("cuda", "mps", "tpu") if available(name))])
        raise BenchError(
            f"accelerator {accelerator!r} is not available on this machine (available: {here})",
            "run on a machine that has one (e.g. a GPU node through `bench sweep --executor slurm`), or pass"
            " --accelerator cpu (or auto)",
        )
    if usable:
        count = AcceleratorRegistry.get(usable[0]).auto_device_count()
        if devices.isdigit() and int(devices) > count:
            raise BenchError(
                f"devices {devices} asks for more {accelerator} devices than this machine has ({count})",
                f"pass --devices {count} or fewer, or -1 for all",
            )
    settings = {"accelerator": accelerator, "devices": devices, "strategy": strategy, "precision": precision}
    try:
        L.Trainer(**settings, num_nodes=num_nodes, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    except (
        ImportError,
        ValueError,
        RuntimeError,
        TypeError,
        L.fabric.utilities.exceptions.MisconfigurationException,
    ) as error:
        asked = " ".join(f"--{name} {value}" for name, value in settings.items() if value not in ("auto", "32-true"))
        problem = str(error).strip().splitlines()[0].rstrip(".")
        raise BenchError(
            f"{asked or 'these machine settings'} cannot run here: {problem}",
            "install what it names, or choose a strategy and precision this machine supports (e.g. --strategy auto"
            " --precision 32-true, or bf16-mixed on a CPU with AVX512-BF16)",
        ) from None
