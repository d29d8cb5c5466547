"""What a result must say about where it came from: library versions, git commit, hardware."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import site
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from core.files import cache_dir
from tasks.data_source import DATA_ENV

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = (
    "torch",
    "lightning",
    "transformers",
    "peft",
    "datasets",
    "lm_eval",
    "wandb",
    "tokenizers",
    "safetensors",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "matplotlib",
    "gguf",
)


@cache
def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@cache
def git_state() -> dict[str, Any]:
    """The commit of the project checkout, whether tracked files differ from it, and which: read once per process, as
    early as the process asks (`bench` and every sweep worker ask at start), so a record names the checkout its code
    was loaded from, not one committed while it ran."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout

    try:
        changed = sorted(line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines())
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": bool(changed), "changed_files": changed}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown (not a git checkout)", "dirty": None}


# CPU features that pick different float kernels (so different roundings) in torch: part of the hardware class
KERNEL_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"})


def _first_cpu() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    try:
        block = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    except OSError:
        return {}
    return {
        name.strip(): value.strip()
        for name, value in (line.split(":", 1) for line in block.splitlines() if ":" in line)
    }


@cache
def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    cpu = _first_cpu()
    info["processor"] = cpu.get("model name") or platform.processor()
    if cpu:
        info["isa"] = sorted(set(cpu.get("flags", "").split()) & KERNEL_FLAGS)
        info["cache"] = cpu.get("cache size")
        info["cpu_generation"] = f"family {cpu.get('cpu family')} model {cpu.get('model')}"
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def hardware_class(hardware: dict[str, Any]) -> str:
    """What a record's numbers depend on of its machine: the CPU model, the features and cache size that pick its
    float kernels and their blocking (records made before those were recorded name the model alone), and the GPUs
    when it ran on CUDA."""
    cpu = hardware.get("processor") or hardware["machine"]
    if "isa" in hardware:
        cpu += f" ({hardware.get('cpu_generation')}; {' '.join(hardware['isa'])}; cache {hardware.get('cache')})"
    return f"{cpu} + {', '.join(hardware['gpus'])}" if hardware.get("cuda") and hardware.get("gpus") else cpu


def provenance(environments: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a set of runs came from: their commits, machines and the versions of each library (sorted sets)."""
    libraries: dict[str, set[str]] = {}
    for env in environments:
        for name, found in env["libraries"].items():
            libraries.setdefault(name, set()).add(found)
    return {
        "commits": sorted({env["git"]["commit"] for env in environments}),
        "dirty": any(env["git"].get("dirty") for env in environments),
        "hardware": sorted({hardware_class(env["hardware"]) for env in environments}),
        "libraries": {name: sorted(found) for name, found in sorted(libraries.items())},
    }


def version() -> str:
    """`peft-bench <version> (<commit>)`, what `bench --version` prints."""
    try:
        number = importlib.metadata.version("peft-bench")
    except importlib.metadata.PackageNotFoundError:
        number = "unknown (not installed)"
    state = git_state()
    return f"peft-bench {number} ({state['commit']}{', modified' if state['dirty'] else ''})"


def portable(text: str) -> str:
    """`text` with this machine's folders named instead of spelled out: `<cache>` (the model and calibration cache),
    `<data-dir>` (PEFT_BENCH_DATA), `<site-packages>`, `<python>`, `<project>` (this checkout) and `~` (home), so a
    record says where a file came from without telling where the machine keeps it."""
    roots = {str(cache_dir()): "<cache>", **({os.environ[DATA_ENV]: "<data-dir>"} if os.environ.get(DATA_ENV) else {})}
    roots |= {folder: "<site-packages>" for folder in site.getsitepackages()} | {
        sys.prefix: "<python>",
        str(PROJECT_ROOT): "<project>",
        str(Path.home()): "~",
    }
    for root in sorted(roots, key=len, reverse=True):  # the most specific folder first: the venv lives in the project
        text = text.replace(str(Path(root).resolve()), roots[root]).replace(root, roots[root])
    return text


def environment() -> dict[str, Any]:
    return {"libraries": library_versions(), "git": git_state(), "hardware": hardware()}
