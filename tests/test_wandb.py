"""W&B runs read back from their offline `.wandb` files (live history, summary, artifacts, config), learning curves in
records, and progress bars.

wandb 0.31 writes a run's transaction log with its Go core and ships no Python reader for it any more (the old
`wandb.sdk.internal.datastore` is gone). `read_run` undoes the file's framing, which is LevelDB's log format (a
7-byte `:W&B` header, then 32 KiB blocks of chunks with a 7-byte header: CRC, length, type), and parses every
payload with wandb's own protobuf `wandb.proto.wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import shutil
import struct
from collections import defaultdict
from contextlib import redirect_stderr
from pathlib import Path
from statistics import fmean

import numpy as np
import pytest
import torch
import wandb
from wandb.proto import wandb_internal_pb2

from bench.report import plateau, wandb_artifacts, wandb_logging
from bench.run.callbacks import LearningCurves
from bench.run.config import RunConfig
from bench.run.plan import plan
from bench.sweep.logged import execute_logged
from core.errors import BenchError

BLOCK = 32 * 1024
TINY = dict(
    task="glue/sst2",
    model="minilm-l6",
    budget="0.5%",
    max_steps=12,  # past Lightning's logging interval (10 steps), so the train loss is logged before the last step
    max_length=32,
    batch_size=8,
    train_examples=32,
    validation_examples=16,
    test_examples=24,
    calibration_batches=2,
)
METHOD = "deft"  # LoRA plus a density loss that amplifies any change in the activations: the strictest check that curves change nothing
RESULTS = Path(__file__).resolve().parents[1] / "results" / "default"


def read_run(folder: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of the run's `.wandb` file, in order."""
    wandb.teardown()  # `run.finish()` returns before the core has written the log; shutting the core down flushes it
    (path,) = folder.glob("*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunks, position = [], [], 7
    while position + 7 <= len(data):
        left = BLOCK - position % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunks.append(data[position + 7 : position + 7 + length])
        position += 7 + length
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE.../LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
        elif kind == 0:
            chunks = []
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def history_rows(records: list) -> dict[int, dict]:
    """{step: {key: value}} of the run's history (JSON-decoded values)."""
    rows = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            row = {_key(item): json.loads(item.value_json) for item in record.history.item}
            rows[row["_step"]] = row
    return rows


def final_summary(records: list) -> dict:
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary |= {_key(item): json.loads(item.value_json) for item in record.summary.update}
    return summary


def by_step(records: list) -> dict[int, dict]:
    """The run's history rows merged by `trainer/global_step` (several rows can share a step)."""
    steps = defaultdict(dict)
    for row in history_rows(records).values():
        steps[row["trainer/global_step"]] |= row
    return dict(steps)


def run_info(records: list):
    return next(record.run for record in records if record.WhichOneof("record_type") == "run")


def run_config(records: list) -> dict:
    """The run's config, JSON-decoded: the run record's, updated by every config record."""
    updates = [
        record.config if record.WhichOneof("record_type") == "config" else record.run.config
        for record in records
        if record.WhichOneof("record_type") in ("config", "run")
    ]
    return {_key(item): json.loads(item.value_json) for update in updates for item in update.update}


def offline_runs(store: Path) -> list[Path]:
    return sorted((store / "wandb").glob("offline-run-*"))


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict:
    """A real DEFT run on SST-2 with a validation curve every 4 steps, logged to W&B while it trains and from its
    record, with credentials in the environment."""
    store = tmp_path_factory.mktemp("store")
    group = wandb_logging.sweep_group("tiny", "2026-12-01T08:30:00.123456+00:00")
    target = wandb_logging.RunLogging({"project": "peft-bench"}, group, "final", "tiny")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("WANDB_MODE", raising=False)
        env.setenv("WANDB_API_KEY", "0" * 40)  # a key a default run must not use
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            record = execute_logged(plan(RunConfig(method=METHOD, eval_every=4, **TINY)), store, target, progress=True)
    (folder,) = offline_runs(store)  # one W&B run per cell: the live one, closed from the record
    return {
        "store": store,
        "record": record,
        "folder": folder,
        "records": read_run(folder),
        "group": group,
        "stderr": stderr.getvalue(),
    }


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict:
    """The same run without a validation curve, without progress bars and with W&B off, with what it wrote to stderr."""
    store = tmp_path_factory.mktemp("plain")
    target = wandb_logging.RunLogging({"enabled": False}, "plain")
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        record = execute_logged(plan(RunConfig(method=METHOD, **TINY)), store, target, progress=False)
    return {"store": store, "record": record, "stderr": stderr.getvalue()}


def test_credentials_do_not_switch_a_default_run_online(logged: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    assert logged["folder"].name.startswith("offline-run-")
    assert not list((logged["store"] / "wandb").glob("run-*")), "an online run folder was created"
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_logging.mode({}) == "offline"
    assert wandb_logging.mode({"mode": "online"}) == "online"  # asked for in the spec
    monkeypatch.setenv("WANDB_MODE", "online")
    assert wandb_logging.mode({}) == "online"  # asked for by the user
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_logging.mode({"mode": "online"}) == "offline"  # the environment decides when set
    assert wandb_logging.mode({"enabled": False}) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(BenchError, match="WANDB_MODE"):
        wandb_logging.mode({})


def test_history_is_logged_live_at_the_steps_of_the_record_curves(logged: dict) -> None:
    record, rows = logged["record"], by_step(logged["records"])
    curves, key = record["curves"], record["run_key"]
    assert [point["step"] for point in curves["train_loss"]] == list(range(1, 13)) == [p["step"] for p in curves["lr"]]
    assert [point["step"] for point in curves["validation"]] == [4, 8, 12]
    assert curves["validation"][-1] == {"step": 12, **record["metrics"]["validation"]}
    warmup, total, lr = int(0.06 * 12), 12, record["config"]["lr"]
    for point in curves["lr"]:  # the schedule's rate at each step: linear decay after warm-up
        step = point["step"] - 1
        assert point["lr"] == pytest.approx(
            lr * ((step + 1) / (warmup + 1) if step < warmup else (total - step) / (total - warmup))
        )
    # Lightning logs the train loss and rate every 10 steps; the validation curve logs each point as it is computed
    assert sorted(rows) == [4, 8, 10, 12]
    assert {step for step, row in rows.items() if "train/loss" in row} == {10}
    assert rows[10]["train/loss"] == pytest.approx(curves["train_loss"][9]["loss"])
    assert rows[10]["train/lr"] == pytest.approx(curves["lr"][9]["lr"])
    assert {step for step, row in rows.items() if "validation/accuracy" in row} == {4, 8, 12}
    for point in curves["validation"]:
        assert rows[point["step"]]["validation/accuracy"] == pytest.approx(point["accuracy"])
    written = (logged["store"] / f"{key}.predictions.jsonl").stat().st_mtime
    assert rows[10]["_timestamp"] < written and rows[8]["_timestamp"] < written, "logged during fit, not replayed"
    assert run_info(logged["records"]).run_id == key  # the cell's W&B run is named by its run key


def test_summary_tags_group_and_prediction_table(logged: dict) -> None:
    record, records = logged["record"], logged["records"]
    summary = final_summary(records)
    for split in ("validation", "test"):
        for name, value in record["metrics"][split].items():
            assert summary[f"{split}/{name}"] == pytest.approx(value)
    assert {f"cost/{name}" for name in record["cost"]} <= set(summary)
    assert summary["cost/steps"] == 12 and summary["params/achieved"] == record["params"]["achieved"]
    run = run_info(records)
    assert run.run_group == logged["group"] == "tiny-20261201T083000"
    assert set(run.tags) == {"deft", "budget:0.5%", "glue/sst2", "minilm-l6", "seed:0", "final", "spec:tiny"}
    table_ref = summary["predictions/test/path"]
    table = json.loads((logged["folder"] / "files" / table_ref).read_text())
    predictions = [
        json.loads(line)
        for line in (logged["store"] / f"{record['run_key']}.predictions.jsonl").read_text().splitlines()
    ]
    test_rows = [{k: v for k, v in p.items() if k != "split"} for p in predictions if p["split"] == "test"]
    assert table["columns"] == list(test_rows[0]) and len(table["data"]) == len(test_rows) == 24
    assert [dict(zip(table["columns"], row)) for row in table["data"]] == test_rows


def test_artifacts_hold_the_run_files_with_their_sha256(logged: dict) -> None:
    record, store = logged["record"], logged["store"]
    key = record["run_key"]
    artifacts = {  # but the predictions table's own (`run_table`)
        r.artifact.type: r.artifact
        for r in logged["records"]
        if r.WhichOneof("record_type") == "artifact" and r.artifact.type != "run_table"
    }
    files = {
        "run-record": store / f"{key}.json",
        "predictions": store / f"{key}.predictions.jsonl",
        "adapter": store / record["artifacts"]["adapter"]["file"],
    }
    assert set(artifacts) == set(files)
    for kind, path in files.items():
        artifact, data = artifacts[kind], path.read_bytes()
        assert artifact.name == f"{kind}-{key}"
        metadata = json.loads(artifact.metadata)
        assert metadata == {
            "run_key": key,
            "file": path.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "uploaded": True,
        }
        (entry,) = artifact.manifest.contents  # W&B's own checksum agrees, and it uploads the store's file
        assert entry.path == path.name and Path(entry.local_path) == path.resolve() and not entry.ref
        assert entry.digest == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert json.loads(artifacts["adapter"].metadata)["sha256"] == record["artifacts"]["adapter"]["sha256"]


def test_a_file_over_the_upload_limit_is_referenced(logged: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    key = logged["record"]["run_key"]
    path = logged["store"] / logged["record"]["artifacts"]["adapter"]["file"]
    monkeypatch.setattr(wandb_artifacts, "UPLOAD_LIMIT_BYTES", path.stat().st_size - 1)
    artifact = wandb_artifacts.artifact("adapter", key, path)
    assert (
        artifact.metadata["uploaded"] is False
        and artifact.metadata["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    )
    (entry,) = artifact.manifest.entries.values()
    assert entry.ref == path.resolve().as_uri() and entry.local_path is None


def test_config_holds_the_lineage_and_the_summary_the_final_scores(logged: dict) -> None:
    record, records = logged["record"], logged["records"]
    lineage = run_config(records)["lineage"]
    assert lineage["commit"] == record["env"]["git"]["commit"] and lineage["dirty"] == record["env"]["git"]["dirty"]
    assert lineage["model_fingerprint"] == record["model"]["fingerprint"]
    assert lineage["libraries"] == record["env"]["libraries"] and lineage["data"] == record["data"]["files"]
    metrics = {r.metric.name: r.metric for r in records if r.WhichOneof("record_type") == "metric"}
    assert metrics["validation/accuracy"].summary.last  # the final model's score, not the curve's best
    summary = final_summary(records)
    assert summary["validation/accuracy"] == record["metrics"]["validation"]["accuracy"]
    assert summary["test/accuracy"] == record["metrics"]["test"]["accuracy"]


def test_a_run_with_wandb_off_creates_no_wandb_folder(plain: dict) -> None:
    assert plain["record"]["status"] == "ok" and not (plain["store"] / "wandb").exists()


def test_a_failure_closes_the_open_run_of_its_cell(tmp_path: Path) -> None:
    """A run that raised leaves its W&B run open; logging its failed record closes that run, not another."""
    from bench.records.environment import environment
    from bench.records.store import Store

    config, key = RunConfig(method="lora", **TINY).to_dict(), "f" * 64
    target = wandb_logging.RunLogging({}, "failing")
    live = wandb_logging.open_run(tmp_path, target, config, key, wandb_logging.lineage(environment(), None, None))
    failure = Store(tmp_path).write_failure(key, config, RuntimeError("out of memory"))
    wandb_logging.log_record(tmp_path, target, failure)
    assert live.id == key and wandb.run is None
    (folder,) = offline_runs(tmp_path)
    records = read_run(folder)
    assert final_summary(records)["error"] == "RuntimeError: out of memory"
    assert next(r.exit for r in records if r.WhichOneof("record_type") == "exit").exit_code == 1
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert artifact.name == f"run-record-{key}"


def test_sweep_invocations_get_their_own_group() -> None:
    first = wandb_logging.sweep_group("default", "2026-12-01T08:30:00.1+00:00")
    assert first != wandb_logging.sweep_group("default", "2026-12-01T09:00:00.1+00:00") and first.startswith("default-")


def test_curve_evaluation_restores_rng_state_and_train_modes() -> None:
    module = torch.nn.Module()  # the LightningModule: Training, holding the method, holding the model
    module.method = torch.nn.Module()
    module.method.model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    module.method.inner = torch.nn.Module()
    module.method.inner.model = module.method.model  # reached twice, as DEFT's inner method holds the same model
    module.model = module.method.model

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        model.eval()
        torch.manual_seed(0)  # as lm-eval's simple_evaluate does
        return {"draws": random.random() + float(np.random.rand()) + float(torch.rand(1))}

    curves = LearningCurves(evaluate, every=1)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    module.train()
    module.model[0].eval()  # a frozen part kept in eval mode must stay so
    assert "draws" in curves._evaluate_between_steps(module)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert module.training and module.model.training and module.model[1].training and not module.model[0].training


def test_a_validation_curve_does_not_change_the_run(plain: dict, logged: dict) -> None:
    plain = plain["record"]
    curved = logged["record"]
    assert plain["metrics"] == curved["metrics"]
    assert plain["curves"]["train_loss"] == curved["curves"]["train_loss"]
    assert plain["curves"]["validation"] == [{"step": 12, **plain["metrics"]["validation"]}]
    with pytest.raises(BenchError, match="eval_every"):
        plan(RunConfig(method=METHOD, eval_every=0, **TINY))


def test_progress_bars_count_steps_and_examples(logged: dict, plain: dict) -> None:
    text = logged["stderr"].replace("\r", "\n")
    assert "train" in text and "12/12" in text and "Epoch" not in text
    assert "evaluate glue/sst2" in text and "16/16" in text and "24/24" in text
    assert "evaluate" not in plain["stderr"] and "step/s" not in plain["stderr"]


def test_generation_shows_answers_done(smollm2) -> None:
    from tasks.generation import generate

    stderr = io.StringIO()
    with redirect_stderr(stderr):
        generate(
            smollm2.model,
            smollm2.tokenizer,
            ["1 + 1 =", "The capital of France is", "Red, green and"],
            max_new_tokens=3,
            batch_size=2,
            progress=True,
        )
    assert "generate" in stderr.getvalue() and "3/3" in stderr.getvalue()


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> dict:
    """The committed default store, copied, with one run's test answers set to one class (the store has no collapsed
    run of its own), reported twice with W&B logging."""
    from bench.records.record import read_records
    from bench.records.store import Store
    from bench.report.write import write_report

    store = tmp_path_factory.mktemp("report") / "default"
    shutil.copytree(RESULTS, store, ignore=shutil.ignore_patterns("wandb", "report", "logs", "locks"))
    (run,) = [
        r
        for r in read_records(store)
        if (r["config"]["method"], r["config"]["budget"], r["config"]["seed"]) == ("smt", "32k", 1)
    ]
    path = Store(store).predictions_path(run["run_key"])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text(
        "".join(json.dumps(row | {"prediction": 1} if row["split"] == "test" else row) + "\n" for row in rows)
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plateau, "BOOTSTRAP", 20)  # the plateau CIs are test_report's subject; a few refits do here
        write_report(store, log_to_wandb=True)
        report = write_report(store, log_to_wandb=True)
    return {"store": store, "report": report}


def test_one_report_run_per_store_with_native_charts(reported: dict) -> None:
    from bench.records.store import Store
    from bench.report.write import final_records

    store = reported["store"]
    runs = offline_runs(store)
    assert [run.name.rsplit("-", 2)[-2:] for run in runs] == [wandb_logging.report_run_id(store).split("-")], (
        "a report run per report, not per store"
    )
    records = read_run(runs[0])
    updates = [
        record.config if record.WhichOneof("record_type") == "config" else record.run.config
        for record in records
        if record.WhichOneof("record_type") in ("config", "run")
    ]
    config = {_key(item) for update in updates for item in update.update}
    assert {"_wandb/visualize/plateau/minilm-l6/glue-sst2", "_wandb/visualize/pareto/minilm-l6/glue-sst2"} <= config
    summary = final_summary(records)
    collapsed = json.loads((runs[0] / "files" / summary["table/collapsed-predictions/path"]).read_text())
    assert [row[3:5] for row in collapsed["data"]] == [["SMT", "32k"]]  # the one run made to collapse
    table = json.loads((runs[0] / "files" / summary["plateau/minilm-l6/glue-sst2_table/path"]).read_text())
    lines = defaultdict(dict)
    for row in table["data"]:
        point = dict(zip(table["columns"], row))
        lines[point["lineKey"]][round(point["step"], 9)] = point["lineVal"]
    scores = defaultdict(list)  # the seed means, computed here from the records
    for record in final_records(Store(store)):
        scores[record["config"]["method"], record["params"]["achieved"]].append(
            100 * record["metrics"]["test"]["accuracy"]
        )
    for (method, params), values in scores.items():
        if method != "full":
            assert lines[method][round(np.log10(params), 9)] == pytest.approx(fmean(values))
    (full,) = [values for (method, _), values in scores.items() if method == "full"]
    assert list(lines["full"].values()) == pytest.approx([fmean(full)] * 2)  # a horizontal reference line


def test_tags_use_the_budget_labels_of_the_report(reported: dict) -> None:
    from bench.records.store import Store
    from bench.report.plots import display_name
    from bench.report.write import final_records

    frame = reported["report"].tables[0].frame
    in_report = set(zip(frame["Method"], frame["Budget"]))
    tagged = set()
    for record in final_records(Store(reported["store"])):
        (budget_tag,) = [
            tag for tag in wandb_logging.run_tags(record["config"], "final", "default") if tag.startswith("budget:")
        ]
        tagged.add((display_name(record["config"]["method"]), budget_tag.removeprefix("budget:")))
    assert tagged == in_report
    assert ("Full FT", "100%") in tagged and ("SVFit", "native") in tagged


def test_spec_mode_and_eval_every_and_emitted_sweeps(logged: dict) -> None:
    from bench.sweep.spec import parse_spec
    from bench.sweep.wandb_sweep import wandb_sweep

    spec = {
        "name": "tiny",
        "model": "minilm-l6",
        "tasks": ["glue/sst2"],
        "seeds": [0],
        "budgets": ["0.5%"],
        "methods": ["lora"],
    }
    parsed = parse_spec(spec | {"training": {"eval_every": 5}, "wandb": {"mode": "online"}})
    assert (
        parsed.wandb["mode"] == "online"
        and parsed.run_config(parsed.methods[0], "minilm-l6", "glue/sst2", "0.5%", 0, None).eval_every == 5
    )
    with pytest.raises(BenchError, match=r"wandb\.mode"):
        parse_spec(spec | {"wandb": {"mode": "sometimes"}})
    emitted = wandb_sweep(parsed, 0, logged["store"])
    assert emitted["command"][:2] == ["${env}", "WANDB_MODE=online"]  # a W&B sweep needs its runs online
    assert emitted["metric"]["name"] in final_summary(logged["records"])


def test_pareto_chart_holds_only_memory_measured_in_isolation(reported: dict) -> None:
    from bench.records.store import Store
    from bench.report.write import final_records

    store = reported["store"]
    summary = final_summary(read_run(offline_runs(store)[0]))
    table = json.loads(
        (offline_runs(store)[0] / "files" / summary["pareto/minilm-l6/glue-sst2_table/path"]).read_text()
    )
    records = final_records(Store(store))
    points = wandb_logging._chart_points([record for record in records if record["task"]["name"] == "glue/sst2"])
    isolated = {(point["method"], point["budget"]) for point in points if point["memory_mb"] is not None}
    shared = {(point["method"], point["budget"]) for point in points if point["memory_mb"] is None}
    assert shared, "the committed store ran in long-lived workers: most peaks are not isolated"
    assert {(row[0], row[1]) for row in table["data"]} == isolated - shared, "only cells whose every run was isolated"
    record = next(record for record in records if not record["cost"]["memory_isolated"])
    alone = json.loads(json.dumps(record))
    alone["cost"]["memory_isolated"] = True
    points = wandb_logging._chart_points([record, alone])
    assert [point["memory_mb"] for point in points] == [
        None,
        pytest.approx(record["cost"]["peak_memory_bytes"] / 2**20),
    ]


def test_compare_logs_its_table_to_the_store_run_and_alerts_on_a_regression(tmp_path: Path, capsys) -> None:
    from bench.cli import main
    from bench.report.compare import write_baseline

    store = tmp_path / "default"
    shutil.copytree(RESULTS, store, ignore=shutil.ignore_patterns("wandb", "report", "logs", "locks"))
    same = write_baseline(store, tmp_path / "same.json")
    assert main(["compare", str(store), str(same)]) == 0
    summary = json.loads(same.read_text())
    lora = next(cell for cell in summary["cells"] if cell["method"] == "lora")
    lora["score"]["mean"] += 2 * lora["score"]["std"] + 3  # the baseline was better by more than the tolerance
    (tmp_path / "better.json").write_text(json.dumps(summary))
    assert main(["compare", str(store), str(tmp_path / "better.json")]) == 1
    capsys.readouterr()
    passed, regressed = (read_run(run) for run in offline_runs(store))  # one offline run per compare, oldest first
    for records, failed in ((passed, False), (regressed, True)):
        assert run_info(records).run_id == wandb_logging.report_run_id(store)  # the store's report run
        assert final_summary(records)["compare/regressed"] is failed
        logged = {_key(item) for r in records if r.WhichOneof("record_type") == "history" for item in r.history.item}
        assert "compare/table/_type" in logged  # a wandb.Table
        alerts = [record.alert for record in records if record.WhichOneof("record_type") == "alert"]
        assert [alert.title for alert in alerts] == (["peft-bench regression"] if failed else [])
    assert "**REGRESSION**" in alerts[0].text and "lora" in alerts[0].text
