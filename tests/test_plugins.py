"""A user's own methods and tasks from a plugin folder or an installed package (core.plugins), without editing the
package: the shipped example (examples/plugins/bitfit.py) is listed, runs, and its code is part of the run key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.models import load_model
from bench.run.plan import plan
from core.errors import BenchError
from core.plugins import ENVIRONMENT
from methods import catalogue, get_method, registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugins"
TINY = dict(
    model="minilm-l6",
    max_steps=3,
    batch_size=8,
    train_examples=32,
    validation_examples=16,
    test_examples=32,
    calibration_batches=1,
)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A copy of the example folder, named in PEFT_BENCH_PLUGINS for this test only."""
    folder = tmp_path / "plugins"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv(ENVIRONMENT, str(folder))
    return folder


def test_cli_lists_plugins_from_a_folder(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(ENVIRONMENT, "")  # restored after the test: --plugins sets it for this process
    assert main(["--plugins", str(EXAMPLE), "list"]) == 0
    listing = capsys.readouterr().out
    assert "bitfit" in listing and "example/cola-accuracy" in listing
    assert "bitfit" in catalogue(), "the torch-free listing parses plugin files too"


def test_plugin_method_trains_exactly_the_biases_it_counts(plugins: Path, tmp_path: Path) -> None:
    record = execute(
        plan(RunConfig(method="bitfit", task="example/cola-accuracy", seed=0, **TINY)), tmp_path, progress=False
    )
    assert record["status"] == "ok" and record["task"]["primary_metric"] == "accuracy"
    base = load_model("minilm-l6", "sequence-classification", num_labels=2).model
    expected = sum(
        p.numel()
        for n, p in base.named_parameters()
        if n.endswith(".bias") and not n.startswith("classifier") and ".attention.self.key." not in n
    )  # every backbone bias but the attention keys', whose gradient is identically zero
    assert record["params"]["achieved"] == expected


def test_plugin_code_is_part_of_the_run_key(plugins: Path) -> None:
    config = RunConfig(method="bitfit", task="example/cola-accuracy", seed=0, **TINY)
    first = plan(config).key
    source = plugins / "bitfit.py"
    source.write_text(source.read_text(encoding="utf-8") + "\n# a comment changes no key\n", encoding="utf-8")
    assert plan(config).key == first
    source.write_text(
        source.read_text(encoding="utf-8").replace("default_lr = 1e-3", "default_lr = 1e-3\n    scale = 2"),
        encoding="utf-8",
    )
    assert plan(config).key != first


def test_installed_package_plugin_through_its_entry_point(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real installed distribution (dist-info with entry_points.txt) on sys.path, as pip would leave it."""
    monkeypatch.setenv(ENVIRONMENT, "")
    (tmp_path / "my_peft_plugin.py").write_text(
        'from methods.full import FullFineTuning\n\n\nclass Everything(FullFineTuning):\n    """Full FT under another name."""\n\n    name = \'everything\'\n',
        encoding="utf-8",
    )
    info = tmp_path / "my_peft_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-peft-plugin\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[peft_bench.plugins]\nmine = my_peft_plugin\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert get_method("everything").__module__ == "my_peft_plugin"
    assert "lora" in registry(), "built-in methods stay"


def test_plugin_names_never_shadow_built_ins(plugins: Path) -> None:
    (plugins / "clash.py").write_text(
        "from methods.full import FullFineTuning\n\n\nclass Mine(FullFineTuning):\n    name = 'lora'\n",
        encoding="utf-8",
    )
    with pytest.raises(BenchError, match="two definitions claim the name 'lora'"):
        registry()


def test_missing_plugin_folder_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv(ENVIRONMENT, "")
    assert main(["--plugins", str(tmp_path / "nowhere"), "list"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
