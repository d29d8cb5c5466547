"""The planning skeleton rebuilt from a stored layout (bench/run/skeleton.py) against transformers' own meta-device model:
the same modules, shapes, ties and config for the methods, the same budget ranges and knobs for every method, shipped
layouts equal to fresh ones, a cache keyed by the config, and plans from either that never import transformers'
model classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from bench.run import models
from bench.run.models import SHIPPED_LAYOUTS, describe_from_config, layout_name, model_skeleton, model_source
from bench.run.shipped_layouts import shipped_cases
from core.errors import BenchError
from core.files import CACHE_ENV
from methods import get_method, registry
from methods.recipes import resolve

ROOT = Path(__file__).resolve().parent.parent
CASES = [("minilm-l6", "sequence-classification", 2), ("minilm-l6", "sequence-classification", 1)]
CASES_DECODER = [("smollm2-135m", "causal-lm", 0)]


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty skeleton cache; the model folders (SmolLM2's converted one among them) stay in the real cache."""
    monkeypatch.setattr(models, "_layout_cache", lambda: tmp_path / "cache" / "skeletons")
    model_skeleton.cache_clear()
    yield tmp_path / "cache"
    model_skeleton.cache_clear()


def _transformers_meta(name: str, kind: str, num_labels: int) -> nn.Module:
    source = model_source(name)
    config = AutoConfig.from_pretrained(source, **({"num_labels": num_labels} if num_labels else {}))
    with torch.device("meta"):
        auto = AutoModelForSequenceClassification if kind == "sequence-classification" else AutoModelForCausalLM
        return auto.from_config(config)


def _modules(model: nn.Module) -> list[tuple]:
    return [
        (
            name,
            type(module).__name__ if not isinstance(module, nn.Linear) else "Linear",
            len(module) if isinstance(module, nn.ModuleList | nn.Sequential) else None,
            (module.in_features, module.out_features, module.bias is not None)
            if isinstance(module, nn.Linear)
            else None,
        )
        for name, module in model.named_modules()
    ]


def _parameters(model: nn.Module) -> list[tuple]:
    return [(name, tuple(p.shape), p.dtype, p.requires_grad) for name, p in model.named_parameters()]


def _knobs(model: nn.Module, head_prefixes: tuple[str, ...], kind: str) -> dict[str, tuple]:
    """Every method's knob range and the counts at both ends and the middle, built on `model`."""
    found = {}
    for name in registry():
        method_cls = get_method(name)
        options = resolve(method_cls, "default", kind, {}, 10).options
        method = method_cls(model, options, head_prefixes=head_prefixes)
        if not method.counts_before_calibration():
            found[name] = ("counted after calibration",)
            continue
        try:
            low, high = method.knob_bounds()
        except BenchError as refused:  # zero-shot with a classification head
            found[name] = ("refused", str(refused))
            continue
        found[name] = (low, high, *(method.count_for_knob(k) for k in (low, (low + high) // 2, high)))
    return found


@pytest.mark.parametrize(("name", "kind", "num_labels"), CASES + CASES_DECODER)
def test_rebuilt_skeleton_matches_the_transformers_model(fresh_cache: Path, name, kind, num_labels) -> None:
    reference = _transformers_meta(name, kind, num_labels)
    skeleton = model_skeleton(name, kind, num_labels)
    rebuilt = skeleton.model
    assert rebuilt is not reference and type(rebuilt).__name__ == type(reference).__name__
    assert _modules(rebuilt) == _modules(reference)
    assert _parameters(rebuilt) == _parameters(reference)  # named_parameters drops tied copies in both
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in reference.parameters())
    for field in ("model_type", "hidden_act", "hidden_size", "num_hidden_layers", "is_decoder"):
        assert getattr(rebuilt.config, field, "absent") == getattr(reference.config, field, "absent")
    head_prefixes = models._head_prefixes(reference, kind)
    assert skeleton.head_prefixes == head_prefixes
    assert _knobs(rebuilt, head_prefixes, kind) == _knobs(reference, head_prefixes, kind)


def test_decoder_ties_its_output_layer_to_the_embeddings(fresh_cache: Path) -> None:
    rebuilt = model_skeleton("smollm2-135m", "causal-lm").model
    assert rebuilt.config.tie_word_embeddings
    assert rebuilt.lm_head.weight is rebuilt.model.embed_tokens.weight


def _shallow_minilm(folder: Path) -> Path:
    """A model folder holding only MiniLM's config with 2 layers: a model with no shipped layout."""
    folder.mkdir()
    config = json.loads((Path(model_source("minilm-l6")) / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 2}), encoding="utf-8")
    return folder


def test_built_in_layouts_ship_and_others_are_cached_by_config(fresh_cache: Path, tmp_path: Path) -> None:
    model_skeleton("minilm-l6", "sequence-classification", 2)
    model_skeleton("smollm2-135m", "causal-lm")
    assert not (fresh_cache / "skeletons").exists()  # both shipped
    shallow = model_skeleton(str(_shallow_minilm(tmp_path / "shallow")), "sequence-classification", 2).model
    assert len(shallow.bert.encoder.layer) == 2
    assert len(list((fresh_cache / "skeletons").glob("*.json"))) == 1


@pytest.mark.parametrize(("name", "kind", "num_labels"), shipped_cases())
def test_shipped_layouts_equal_a_fresh_description(name: str, kind: str, num_labels: int) -> None:
    """Fails when the transformers pin or a model changes: rerun `python -m bench.run.shipped_layouts` and commit bench/run/layouts."""
    path = SHIPPED_LAYOUTS / layout_name(Path(model_source(name)) / "config.json", kind, num_labels)
    assert path.is_file(), f"no shipped layout for {name} {kind} {num_labels}"
    assert json.loads(path.read_text(encoding="utf-8")) == describe_from_config(name, kind, num_labels)
    assert str(ROOT) not in path.read_text(encoding="utf-8")  # nothing about this machine's folders
    assert str(Path(model_source(name)).parent) not in path.read_text(encoding="utf-8")


def _unreachable_budget(cache: Path, model: str) -> subprocess.CompletedProcess:
    """`bench run` with an unreachable budget, in a fresh process; prints whether transformers' models were imported."""
    code = (
        "import sys\nfrom bench.cli import main\ncode = main()\n"
        "print('modeling imported:', 'transformers.modeling_utils' in sys.modules)\nsys.exit(code)"
    )
    args = ["run", "--model", model, "--method", "lora", "--budget", "50M", "--task", "glue/sst2"]
    env = {**os.environ, CACHE_ENV: str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_plan_from_a_stored_layout_skips_transformers_models(tmp_path: Path) -> None:
    cache, shallow = tmp_path / "cache", str(_shallow_minilm(tmp_path / "shallow"))
    runs = [_unreachable_budget(cache, model) for model in ("minilm-l6", shallow, shallow)]
    for finished in runs:
        assert (
            finished.returncode == 2 and "budget of 50,000,000 trainable parameters is unreachable" in finished.stderr
        )
    assert ["modeling imported: True" in finished.stdout for finished in runs] == [False, True, False], [
        finished.stdout for finished in runs
    ]  # shipped; built once with transformers; then cached
