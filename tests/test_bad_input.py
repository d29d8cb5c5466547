"""A catalogue of bad input to `bench run`, `bench sweep`, spec files, `bench report` and `bench compare`.

Each case runs the command line in this process (`bench.cli.main`) and must give a non-zero exit, exactly one line
on stderr (`bench: error: <problem>. Fix: <fix>`, no traceback), and leave every file of the workspace (a small
store, specs, baselines, data) byte for byte as it was: nothing written, nothing stored changed.
"""

from __future__ import annotations

import json
import shutil
import typing
from pathlib import Path

import pytest
import torch
import yaml

from bench.cli import main
from bench.records.store import Store
from bench.run.models import model_skeleton
from bench.run.settings import ACCELERATORS, DTYPES, PRECISIONS, STRATEGIES
from tasks.data_source import COMMITTED_DATA
from tests.test_sweep import TINY

RUN = [
    "run",
    "--task",
    "glue/sst2",
    "--model",
    "minilm-l6",
    "--max-steps",
    "2",
    "--batch-size",
    "8",
    "--train-examples",
    "16",
    "--validation-examples",
    "16",
    "--test-examples",
    "16",
    "--quiet",
]
LORA = [*RUN, "--method", "lora", "--budget", "0.5%"]
TOLERANCES = ("--k", "--score-floor", "--memory-floor", "--cpu-memory-floor", "--time-floor")


def _spec(**change: typing.Any) -> dict:
    return {**TINY, **change}


def _one_percent_as_count() -> str:
    """The count MiniLM's 1 % budget resolves to, written as an absolute budget."""
    return str(round(0.01 * model_skeleton("minilm-l6", "sequence-classification", 2).base_params))


SPECS: dict[str, typing.Any] = {
    "unknown-model": _spec(model="no-such-model"),
    "repeated-task": _spec(tasks=["glue/sst2", "glue/sst2"]),
    "repeated-method": _spec(methods=["lora", "lora"]),
    "repeated-lr": _spec(methods={"lora": {"lrs": [1e-4, 1e-4]}}),
    "nan-lr": _spec(methods={"lora": {"lr": float("nan")}}),
    "inf-lr": _spec(methods={"lora": {"lr": float("inf")}}),
    "zero-steps": _spec(training={**TINY["training"], "max_steps": 0}),
    "zero-train-examples": _spec(training={**TINY["training"], "train_examples": 0}),
    "bad-dtype": _spec(training={**TINY["training"], "dtype": "float8"}),
    "bad-strategy": _spec(training={**TINY["training"], "strategy": "magic"}),
    "negative-seed": _spec(seeds=[-1]),
    "tuning-seed-text": _spec(tuning={"lrs": [1e-4], "seed": "first"}),
    "bad-dropout": _spec(methods={"lora": {"options": {"dropout": 2}}}),
    "native-needs-budget": _spec(methods={"lora": {"budgets": "native"}}),
    "same-count-budgets": None,  # filled in the fixture: "1%" and the count it resolves to
    "not-a-mapping": ["lora"],
    "zero-nodes": _spec(training={**TINY["training"], "num_nodes": 0}),
    "two-nodes": _spec(methods={"lora": {}}, seeds=[0], training={**TINY["training"], "num_nodes": 2}),
    "mixed-devices": _spec(methods={"lora": {"training": {"devices": 2}}, "full": {}}, seeds=[0]),
    "local-array": _spec(methods={"lora": {}}, seeds=[0], slurm={"cluster": "local"}),
    "bad-slurm": _spec(methods={"lora": {}}, seeds=[0], slurm={"no_such_parameter": 1}),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store (a failed record and a sweep.json), broken stores, baselines, specs and a non-UTF-8 data root."""
    root = tmp_path_factory.mktemp("bad-input")
    store = Store(root / "store")
    store.write_failure(
        "a" * 64,
        {"method": "lora", "task": "glue/sst2", "model": "minilm-l6", "budget": "0.5%", "seed": 0},
        RuntimeError("kept"),
    )
    store.write_meta("sweep.json", {"name": "kept", "cells": []})
    for name, content in {
        "truncated": '{"schema_version": 1, "run_key": "b',
        "future": json.dumps({"schema_version": 99, "run_key": "c", "status": "ok"}),
    }.items():
        (root / name).mkdir()
        (root / name / "record.json").write_text(content)
    Store(root / "tuning").write_meta("sweep.json", {"name": "tuning", "cells": [{"key": "d" * 64, "role": "tuning"}]})
    (root / "badmeta").mkdir()
    (root / "badmeta" / "sweep.json").write_text("\x00\x01 not json")
    (root / "baseline").mkdir()
    (root / "baseline" / "summary.json").write_text('{"schema": "peft-bench-summary/1", "cells": [')
    summary = {
        "schema": "peft-bench-summary/1",
        "created_at": "2026-12-07T00:00:00+00:00",
        "source": "new",
        "cells": [],
    }
    (root / "new.json").write_text(json.dumps(summary))
    (root / "other-schema.json").write_text(json.dumps({"schema": "something-else", "cells": []}))
    (root / "latin1.json").write_bytes('{"schema": "café"}'.encode("latin-1"))
    data = root / "data" / "glue" / "SST-2"
    shutil.copytree(COMMITTED_DATA / "glue" / "SST-2", data)
    (data / "train.jsonl").write_bytes('{"sentence": "caf\xe9", "label": 1}\n'.encode("latin-1"))
    (root / "file").write_text("a file, not a folder")
    specs = root / "specs"
    specs.mkdir()
    SPECS["same-count-budgets"] = _spec(budgets=["1%", _one_percent_as_count()], methods={"lora": {}})
    for name, spec in SPECS.items():
        (specs / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    (specs / "broken.yaml").write_text("methods: [lora\nseeds: 0: 1")
    (specs / "latin1.yaml").write_bytes("name: café\n".encode("latin-1"))
    (specs / "repeated-key.yaml").write_text(yaml.safe_dump(TINY) + "methods: {lora: {}}\n")
    (specs / "ok.yaml").write_text(yaml.safe_dump(_spec(methods={"lora": {}}, seeds=[0])))
    return root


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mode)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


RUN_CASES = [
    (["--method", "nosuch", "--budget", "1%"], "unknown method 'nosuch'"),
    (["--method", "lora", "--budget", "1%", "--task", "glue/nosuch"], "unknown task 'glue/nosuch'"),
    (["--method", "lora", "--budget", "1%", "--model", "nosuch"], "unknown model 'nosuch'"),
    (["--method", "lora", "--budget", "abc"], "malformed budget"),
    (["--method", "lora", "--budget", "-1%"], "malformed budget"),
    (["--method", "lora", "--budget", "200%"], "outside (0%, 100%]"),
    (["--method", "lora", "--budget", "0"], "less than one parameter"),
    (["--method", "lora", "--budget", "90%"], "unreachable"),
    (["--method", "lora"], "needs a budget"),
    (["--method", "dora"], "needs a budget"),
    ([*LORA[1:], "--option", "nosuch=1"], "has no option 'nosuch'"),
    ([*LORA[1:], "--option", "dropout=1.5"], "dropout=1.5 is out of range"),
    ([*LORA[1:], "--option", "dropout=nan"], "dropout=nan is out of range"),
    ([*LORA[1:], "--option", "dropout=-0.1"], "out of range"),
    ([*LORA[1:], "--option", "alpha_per_rank=inf"], "alpha_per_rank=inf is out of range"),
    ([*LORA[1:], "--option", "rslora=maybe"], "must be bool"),
    ([*LORA[1:], "--option", "noequals"], "is not KEY=VALUE"),
    ([*LORA[1:], "--option", "targets=zz"], "do not exist for model type"),
    (["--method", "deft", "--budget", "0.5%", "--option", "weight=nan"], "weight=nan is out of range"),
    (["--method", "deft", "--budget", "0.5%", "--option", "base=deft"], "cannot be its own base"),
    (["--method", "smt", "--budget", "0.5%", "--option", "mlp_share=2"], "mlp_share=2.0 is outside [0, 1]"),
    (["--method", "smt", "--budget", "0.5%", "--option", "block_size=7"], "does not divide"),
    (["--method", "smt", "--budget", "90%"], "unreachable"),
    (["--method", "svfit", "--option", "energy=0"], "energy 0.0 is outside (0, 1]"),
    (["--method", "svfit", "--budget", "90%", "--option", "rank_rule=budget"], "unreachable"),
    (["--method", "row-sft", "--budget", "0.5%", "--option", "zo_estimates=0"], "zo_estimates >= 1"),
    (["--method", "row-sft", "--budget", "90%"], "unreachable"),
    ([*LORA[1:], "--max-steps", "0"], "max_steps must be a whole number of at least 1"),
    ([*LORA[1:], "--max-steps", "-5"], "max_steps must be"),
    ([*LORA[1:], "--max-steps", "many"], "invalid int value"),
    ([*LORA[1:], "--batch-size", "0"], "batch_size must be"),
    ([*LORA[1:], "--eval-batch-size", "0"], "eval_batch_size must be"),
    ([*LORA[1:], "--max-length", "0"], "max_length must be"),
    ([*LORA[1:], "--calibration-batches", "0"], "calibration_batches must be"),
    ([*LORA[1:], "--train-examples", "0"], "train_examples must be at least 1"),
    ([*LORA[1:], "--validation-examples", "0"], "validation_examples must be at least 1"),
    ([*LORA[1:], "--test-examples", "-1"], "test_examples must be at least 1"),
    ([*LORA[1:], "--threads", "0"], "threads must be at least 1"),
    ([*LORA[1:], "--seed", "-1"], "seed must be a whole number in 0.."),
    ([*LORA[1:], "--seed", str(2**32)], "seed must be a whole number in 0.."),
    ([*LORA[1:], "--lr", "0"], "learning rate must be a finite number above 0"),
    ([*LORA[1:], "--lr", "-1e-4"], "learning rate must be"),
    ([*LORA[1:], "--lr", "nan"], "learning rate must be"),
    ([*LORA[1:], "--lr", "inf"], "learning rate must be"),
    ([*LORA[1:], "--weight-decay", "-0.1"], "weight_decay must be"),
    ([*LORA[1:], "--weight-decay", "nan"], "weight_decay must be"),
    ([*LORA[1:], "--warmup-ratio", "1.5"], "warmup_ratio must be a fraction"),
    ([*LORA[1:], "--warmup-ratio", "-0.1"], "warmup_ratio must be a fraction"),
    ([*LORA[1:], "--dtype", "float8"], "dtype 'float8' is not one"),
    ([*LORA[1:], "--precision", "8-true"], "precision '8-true' is not one"),
    ([*LORA[1:], "--accelerator", "quantum"], "accelerator 'quantum' is not one"),
    ([*LORA[1:], "--strategy", "magic"], "strategy 'magic' is not one"),
    ([*LORA[1:], "--devices", "0"], "devices '0' is not"),
    ([*LORA[1:], "--devices", "two"], "devices 'two' is not"),
    ([*LORA[1:], "--devices", "0,0"], "devices '0,0' is not"),
    ([*LORA[1:], "--num-nodes", "0"], "num_nodes must be a whole number of at least 1"),
    ([*LORA[1:], "--data-dir", "{root}/no-such-data"], "does not exist"),
    ([*LORA[1:], "--data-dir", "{root}/data"], "is not UTF-8 text"),
    ([*LORA[1:], "--out", "{root}/file/out"], "not writable"),
    (["--budget", "1%"], "the following arguments are required: --method"),
    *(  # the machine is checked where the run executes, before any weight loads
        [([*LORA[1:], "--accelerator", "cuda", "--devices", "99"], "asks for more cuda devices than this machine has")]
        if torch.cuda.is_available()
        else [
            ([*LORA[1:], "--accelerator", name], f"accelerator '{name}' is not available") for name in ("gpu", "cuda")
        ]
    ),
    # strategies and precisions whose package this machine lacks, or that need other hardware: Lightning's own
    # reason, before any weight loads
    ([*LORA[1:], "--strategy", "deepspeed"], "--strategy deepspeed cannot run here: To use the `DeepSpeedStrategy`"),
    ([*LORA[1:], "--precision", "transformer-engine"], "cannot run here: Requirement 'transformer_engine"),
    ([*LORA[1:], "--accelerator", "tpu"], "accelerator 'tpu' is not available on this machine (available: cpu"),
    *(
        []
        if torch.cuda.is_available()
        else [
            ([*LORA[1:], "--strategy", "fsdp"], "--strategy fsdp cannot run here: The strategy `fsdp` requires a GPU")
        ]
    ),
]


@pytest.mark.parametrize(("arguments", "message"), RUN_CASES, ids=[f"run-{i}" for i in range(len(RUN_CASES))])
def test_bad_run(workspace: Path, capsys: pytest.CaptureFixture, arguments: list[str], message: str) -> None:
    command = [*RUN, *arguments] if arguments[0] != "run" else arguments
    _refused(
        workspace,
        capsys,
        [*command, "--out", str(workspace / "store")] if "--out" not in arguments else command,
        message,
    )


SWEEP_CASES = [
    ("{root}/specs/missing.yaml", [], "does not exist"),
    ("{root}/specs/broken.yaml", [], "is not valid YAML"),
    ("{root}/specs/latin1.yaml", [], "is not UTF-8 text"),
    ("{root}/specs/repeated-key.yaml", [], "repeated in one mapping"),
    ("{root}/specs/unknown-model.yaml", [], "unknown model 'no-such-model'"),
    ("{root}/specs/repeated-task.yaml", [], "repeats glue/sst2"),
    ("{root}/specs/repeated-method.yaml", [], "repeats lora"),
    ("{root}/specs/repeated-lr.yaml", [], "repeats 0.0001"),
    ("{root}/specs/nan-lr.yaml", [], "must be finite and positive"),
    ("{root}/specs/inf-lr.yaml", [], "must be finite and positive"),
    ("{root}/specs/zero-steps.yaml", [], "max_steps must be"),
    ("{root}/specs/zero-train-examples.yaml", [], "train_examples must be at least 1"),
    ("{root}/specs/bad-dtype.yaml", [], "dtype 'float8'"),
    ("{root}/specs/bad-strategy.yaml", [], "strategy 'magic'"),
    ("{root}/specs/negative-seed.yaml", [], "must lie in 0.."),
    ("{root}/specs/tuning-seed-text.yaml", [], "tuning seed first is not one of the seeds"),
    ("{root}/specs/bad-dropout.yaml", [], "dropout=2.0 is out of range"),
    ("{root}/specs/native-needs-budget.yaml", [], "needs a budget"),
    ("{root}/specs/same-count-budgets.yaml", [], "resolve to the same count"),
    ("{root}/specs/not-a-mapping.yaml", [], "must be a mapping"),
    ("{root}/specs/ok.yaml", ["--workers", "0"], "--workers must be at least 1"),
    ("{root}/specs/ok.yaml", ["--executor", "nowhere"], "invalid choice"),
    ("{root}/specs/zero-nodes.yaml", [], "num_nodes must be a whole number of at least 1"),
    ("{root}/specs/two-nodes.yaml", [], "num_nodes 2 needs a job on 2 machines"),
    ("{root}/specs/mixed-devices.yaml", ["--executor", "slurm"], "the sweep's runs differ in devices or num_nodes"),
    ("{root}/specs/ok.yaml", ["--detach"], "--detach needs --executor slurm"),
    ("{root}/specs/local-array.yaml", ["--executor", "slurm", "--detach"], "but slurm.cluster is local"),
    ("{root}/specs/ok.yaml", ["--executor", "slurm", "--detach", "--emit-sbatch", "{root}/x.sh"], "pick one"),
    ("{root}/specs/bad-slurm.yaml", ["--emit-sbatch", "{root}/x.sh"], "bad slurm parameter"),
]


@pytest.mark.parametrize(("spec", "extra", "message"), SWEEP_CASES, ids=[f"sweep-{i}" for i in range(len(SWEEP_CASES))])
def test_bad_sweep(workspace: Path, capsys: pytest.CaptureFixture, spec: str, extra: list[str], message: str) -> None:
    _refused(workspace, capsys, ["sweep", spec, "--out", "{root}/store", "--quiet", *extra], message)


REPORT_CASES = [
    ("{root}/nowhere", "does not exist"),
    ("{root}/truncated", "record.json is corrupt"),
    ("{root}/future", "has schema version 99"),
    ("{root}/badmeta", "sweep.json is corrupt"),
    ("{root}/tuning", "no final run yet: the sweep is tuning learning rates (0 of 1 tuning runs done)"),
]


STATUS_CASES = [
    ("{root}/nowhere", "store {root}/nowhere does not exist"),
    ("{root}/truncated", "holds no sweep.json: no sweep ran into it"),
]


@pytest.mark.parametrize(("store", "message"), STATUS_CASES, ids=[f"status-{i}" for i in range(len(STATUS_CASES))])
def test_bad_status(workspace: Path, capsys: pytest.CaptureFixture, store: str, message: str) -> None:
    _refused(workspace, capsys, ["status", store], message.replace("{root}", str(workspace)))


@pytest.mark.parametrize(("store", "message"), REPORT_CASES, ids=[f"report-{i}" for i in range(len(REPORT_CASES))])
def test_bad_report(workspace: Path, capsys: pytest.CaptureFixture, store: str, message: str) -> None:
    _refused(workspace, capsys, ["report", store, "--no-wandb"], message)


COMPARE_CASES = [
    *(
        (["{root}/store", "{root}/baseline", flag, value], "would switch the regression gate off")
        for flag in TOLERANCES
        for value in ("nan", "-1", "inf")
    ),
    (["{root}/store", "{root}/no-baseline"], "does not exist"),
    (["{root}/new.json", "{root}/baseline"], "summary.json is corrupt"),
    (["{root}/new.json", "{root}/other-schema.json"], "is not a peft-bench summary"),
    (["{root}/new.json", "{root}/latin1.json"], "latin1.json is corrupt"),
    (["{root}/store", "{root}/new.json"], "holds no summary.json and no finished run"),
    (["{root}/truncated", "{root}/other-schema.json"], "record.json is corrupt"),
    (["{root}/future", "{root}/other-schema.json"], "has schema version 99"),
    (["{root}/store", "{root}/baseline", "--k", "lots"], "invalid float value"),
]


@pytest.mark.parametrize(
    ("arguments", "message"), COMPARE_CASES, ids=[f"compare-{i}" for i in range(len(COMPARE_CASES))]
)
def test_bad_compare(workspace: Path, capsys: pytest.CaptureFixture, arguments: list[str], message: str) -> None:
    _refused(workspace, capsys, ["compare", *arguments], message)


def _refused(workspace: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    before = _snapshot(workspace)
    argv = [argument.replace("{root}", str(workspace)) for argument in argv]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors exit from parse_args
        status = exit_.code
    stderr = capsys.readouterr().err
    assert status not in (0, None), stderr
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("bench: error: ") and "Fix:" in stderr, stderr
    assert "Traceback" not in stderr and message in stderr, stderr
    assert _snapshot(workspace) == before, "a refused command changed the workspace"


def test_catalogue_has_at_least_60_distinct_cases() -> None:
    cases = [str(case) for case in (*RUN_CASES, *SWEEP_CASES, *STATUS_CASES, *REPORT_CASES, *COMPARE_CASES)]
    assert len(set(cases)) == len(cases) >= 60


def test_machine_setting_names_are_lightnings() -> None:
    """The names the command line offers without importing torch or Lightning are exactly those they accept."""
    import torch
    from lightning.fabric.connector import _PRECISION_INPUT_STR
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    assert set(PRECISIONS) == set(typing.get_args(_PRECISION_INPUT_STR))
    assert set(ACCELERATORS) == {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    assert set(STRATEGIES) == {"auto", *StrategyRegistry.available_strategies()}
    assert all(isinstance(getattr(torch, name), torch.dtype) for name in DTYPES)


def test_method_catalogue_matches_the_imported_methods() -> None:
    """`bench list` reads methods from source; the imported classes are the reference."""
    import dataclasses

    from methods import catalogue, registry

    listed, imported = catalogue(), registry()
    assert list(listed) == list(imported)
    for name, method in imported.items():
        assert listed[name].knob_name == method.knob_name
        assert listed[name].options == tuple((f.name, repr(f.default)) for f in dataclasses.fields(method.Options))
