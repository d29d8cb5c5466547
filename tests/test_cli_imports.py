"""What the quick answers of the command line import: help, the version and `bench list` load no deep-learning
library, so they answer at once, and a budget is checked without Lightning. Each case runs `bench` in a fresh process
and lists the heavy modules it loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning", "transformers", "sklearn", "scipy")
PROBE = """
import contextlib, json, sys
from bench.cli import main
with contextlib.redirect_stdout(None), contextlib.suppress(SystemExit):
    main(sys.argv[1:])
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}} & {heavy})))
"""


def heavy_imports(*argv: str) -> list[str]:
    """The packages of HEAVY loaded by `bench *argv` in a fresh process (no plugin folders)."""
    env = {key: value for key, value in os.environ.items() if key != "PEFT_BENCH_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=set(HEAVY)), *argv],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("--version",),
        ("list",),
        *((command, "--help") for command in ("run", "list", "sweep", "report", "compare", "eval", "export")),
    ],
    ids=" ".join,
)
def test_help_version_and_list_import_no_deep_learning_library(argv: tuple[str, ...]) -> None:
    assert heavy_imports(*argv) == []


def test_an_unreachable_budget_is_found_without_lightning_or_transformers() -> None:
    """The budget is solved on a weightless torch model rebuilt from the shipped layout (bench/run/skeleton.py): neither
    Lightning, which only trains, nor transformers, whose model classes only describe a layout not stored yet."""
    loaded = heavy_imports(
        "run", "--method", "lora", "--budget", "90%", "--task", "glue/sst2", "--model", "minilm-l6", "--max-steps", "10"
    )
    assert "torch" in loaded  # the probe sees heavy imports
    assert "lightning" not in loaded and "transformers" not in loaded
