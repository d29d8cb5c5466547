"""A method owns how reports name and draw it, a task package owns its metrics' labels: reports read both from there,
and the torch-free catalogue agrees with the imported classes."""

from __future__ import annotations

import csv
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import matplotlib.pyplot as plt
import pytest

import methods
from bench.report import plots, tables
from core.plugins import ENVIRONMENT
from methods import catalogue, registry
from methods.base import PeftMethod
from tasks import metrics
from tasks import registry as task_registry

ROOT = Path(__file__).resolve().parents[1]
SPARE = [matplotlib.colors.to_hex(rgb) for rgb in plt.get_cmap("Dark2").colors]


@pytest.fixture(autouse=True)
def no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built-in methods and tasks only, whatever the environment names."""
    monkeypatch.delenv(ENVIRONMENT, raising=False)


def test_every_registered_method_has_a_display_name_and_a_colour() -> None:
    for name, method in registry().items():
        assert method.display_name, name
        assert matplotlib.colors.is_color_like(method.color), name
        assert plots.display_name(name) == method.display_name and plots.color(name) == method.color


def test_the_catalogue_reads_the_same_names_and_colours_as_the_imported_classes() -> None:
    listed, imported = catalogue(), registry()
    assert list(listed) == list(imported)
    for name, method in imported.items():
        assert (listed[name].display_name, listed[name].color) == (method.display_name, method.color)


def test_no_two_built_in_methods_share_a_name_or_a_colour() -> None:
    imported = registry()
    assert len({method.display_name for method in imported.values()}) == len(imported)
    assert len({matplotlib.colors.to_hex(method.color) for method in imported.values()}) == len(imported)


def test_the_figures_keep_their_colours() -> None:
    tab10 = plt.get_cmap("tab10").colors
    former = {"full": "black", "zero-shot": "grey", "lora": tab10[0], "dora": tab10[1], "smt": tab10[2]}
    former |= {"row-sft": tab10[3], "svfit": tab10[4], "deft": tab10[6]}
    assert {name: matplotlib.colors.to_rgb(plots.color(name)) for name in former} == {
        name: matplotlib.colors.to_rgb(colour) for name, colour in former.items()
    }


def test_an_unknown_method_is_named_by_itself_in_a_stable_spare_colour() -> None:
    assert plots.display_name("not-a-method") == "not-a-method"
    assert matplotlib.colors.to_hex(plots.color("not-a-method")) in SPARE
    assert plots.color("not-a-method") == plots.color("not-a-method")


def test_a_plugin_method_gets_the_defaults_unless_it_sets_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "mine.py").write_text(
        "from typing import ClassVar\n\n"
        "from methods.base import PeftMethod\nfrom methods.lora import LoRA\n\n\n"
        'class Quiet(LoRA):\n    name = "quiet"\n\n\n'
        'class Shown(PeftMethod):\n    name = "shown"\n    knob_name = "all"\n'
        '    display_name: ClassVar[str] = "Shown FT"\n    color = "tab:olive"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv(ENVIRONMENT, str(tmp_path))
    listed = catalogue()
    assert (listed["quiet"].display_name, listed["quiet"].color) == ("", "")  # not LoRA's: read per class
    assert plots.display_name("quiet") == "quiet" and matplotlib.colors.to_hex(plots.color("quiet")) in SPARE
    assert (plots.display_name("shown"), plots.color("shown")) == ("Shown FT", "tab:olive")
    monkeypatch.setenv(ENVIRONMENT, str(ROOT / "examples" / "plugins"))
    assert plots.display_name("bitfit") == "bitfit" and plots.display_name("shown") == "shown"


def test_every_method_module_is_infrastructure_or_defines_registered_methods() -> None:
    """The scans of `registry()` and `catalogue()` skip exactly the modules that define no method."""
    modules = {info.name for info in pkgutil.iter_modules(methods.__path__) if not info.name.startswith("_")}
    infrastructure = methods._INFRASTRUCTURE
    assert infrastructure <= modules
    defining = {method.__module__.removeprefix("methods.") for method in registry().values()}
    assert defining == modules - infrastructure
    for name in sorted(infrastructure):
        module = importlib.import_module(f"methods.{name}")
        own = [
            value
            for value in vars(module).values()
            if inspect.isclass(value)
            and issubclass(value, PeftMethod)
            and "name" in vars(value)
            and value.__module__ == module.__name__
        ]
        assert own == [], name


def recorded_metrics() -> set[str]:
    """Every metric a registered task declares, and every metric the committed reports hold (per-set ones by name)."""
    declared = {task.primary_metric for task in task_registry().values()}
    declared |= {name for task in task_registry().values() for name in getattr(task, "metrics", {})}
    for path in ROOT.glob("results/*/report/metrics.csv"):
        with path.open(newline="") as handle:
            declared |= {row["metric"].split("/", 1)[-1] for row in csv.DictReader(handle)}
    return declared


@pytest.mark.parametrize("metric", sorted(recorded_metrics()))
def test_every_metric_a_task_records_has_a_label_from_the_tasks_package(metric: str) -> None:
    base = max((name for name in metrics.LABELS if metric == name or metric.startswith(f"{name}_")), key=len)
    assert tables.metric_label(metric, False).startswith(metrics.LABELS[base])


def test_table_labels_come_from_the_tasks_package(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not hasattr(tables, "METRIC_LABELS")
    monkeypatch.setitem(metrics.LABELS, "f1", "F-one")
    assert tables.metric_label("f1", False) == "F-one"
    assert tables.metric_label("accuracy_matched", False) == "Acc matched"
    assert tables.metric_label("accuracy", True) == metrics.DECODER_LABELS["accuracy"] == "Gen acc"
    assert tables.metric_label("average_loglik", True) == "LL acc avg"
    assert tables.metric_label("unlisted_metric", False) == "unlisted_metric"


def test_labels_and_the_catalogue_load_no_heavy_library() -> None:
    probe = (
        "import sys, methods, tasks.metrics; methods.catalogue(); "
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'torch', 'sklearn', 'scipy', 'numpy'}))"
    )
    env = {key: value for key, value in os.environ.items() if key != ENVIRONMENT}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
