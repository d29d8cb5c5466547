"""Bad task data: missing file, malformed row, unknown label, empty split. Each is a BenchError naming the file and
row; through the CLI it is one line on stderr, a non-zero exit, and nothing written to --out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from core.errors import BenchError
from tasks import get_task
from tasks.data_source import COMMITTED_DATA, DataSource


def data_dir_with(tmp_path: Path, *folders: str) -> Path:
    """A data root holding copies of the committed `folders` (so a test can break one file)."""
    root = tmp_path / "data"
    for folder in folders:
        shutil.copytree(COMMITTED_DATA / folder, root / folder)
    return root


def break_json_list(path: Path, row: int, change: dict | None = None, replace_with: object = None) -> None:
    rows = json.loads(path.read_text())
    rows[row - 1] = replace_with if change is None else {**rows[row - 1], **change}
    path.write_text(json.dumps(rows))


def cli_fails(tmp_path: Path, capsys, task: str, root: Path, model: str) -> str:
    out = tmp_path / "out"
    status = main(
        [
            "run",
            "--method",
            "lora",
            "--budget",
            "0.5%",
            "--task",
            task,
            "--model",
            model,
            "--max-steps",
            "1",
            "--data-dir",
            str(root),
            "--out",
            str(out),
        ]
    )
    error = capsys.readouterr().err
    assert status != 0
    assert len(error.strip().splitlines()) == 1 and error.startswith("bench: error: ")
    assert not out.exists()
    return error


def test_missing_file_names_it(tmp_path, capsys):
    root = data_dir_with(tmp_path, "commonsense/boolq")  # the offline mix also needs the ARC and OBQA train sets
    error = cli_fails(tmp_path, capsys, "commonsense/boolq", root, "smollm2-135m")
    assert "no training mix of commonsense/boolq" in error and "commonsense/ARC-Easy/train.json" in error


def test_missing_test_file_names_it(tmp_path):
    root = data_dir_with(tmp_path, "glue/RTE")
    (root / "glue/RTE/validation.jsonl").unlink()
    with pytest.raises(BenchError, match=r"glue/RTE/validation\.jsonl is missing"):
        get_task("glue/rte").load("test", DataSource(root))


def test_malformed_jsonl_row_names_file_and_row(tmp_path, capsys):
    root = data_dir_with(tmp_path, "glue/RTE")
    path = root / "glue/RTE/train.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[6] = '{"sentence1": "cut off\n'
    path.write_text("".join(lines))
    error = cli_fails(tmp_path, capsys, "glue/rte", root, "minilm-l6")
    assert f"{path}, row 7: not valid JSON" in error


def test_malformed_instruction_row_names_file_and_row(tmp_path, capsys):
    root = data_dir_with(tmp_path, "math")
    path = root / "math/gsm8k_original/train.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = json.dumps({"question": "How many?", "answer": "no final line"}) + "\n"
    path.write_text("".join(lines))
    error = cli_fails(tmp_path, capsys, "arithmetic/gsm8k", root, "smollm2-135m")
    assert f"{path}, row 3: malformed row" in error and "####" in error


@pytest.mark.parametrize(
    ("task_name", "relative", "row", "change"),
    [
        ("commonsense/piqa", "commonsense/piqa/test.json", 4, {"answer": "solution3"}),
        ("arithmetic/aqua", "math/AQuA/test.json", 2, {"answer": "F"}),
        ("arithmetic/svamp", "math/SVAMP/test.json", 5, {"answer": "eight"}),
        ("glue-lm/sst2", "glue/SST-2/validation.jsonl", 3, {"label": 2}),
    ],
)
def test_unknown_label_names_file_and_row(tmp_path, task_name, relative, row, change):
    root = data_dir_with(tmp_path, relative.rsplit("/", 1)[0])
    path = root / relative
    if path.suffix == ".jsonl":
        lines = path.read_text().splitlines(keepends=True)
        lines[row - 1] = json.dumps({**json.loads(lines[row - 1]), **change}) + "\n"
        path.write_text("".join(lines))
    else:
        break_json_list(path, row, change)
    with pytest.raises(BenchError, match=rf"{path}, row {row}: .*unknown label"):
        get_task(task_name).load("test", DataSource(root))


def test_unknown_glue_label_through_cli(tmp_path, capsys):
    root = data_dir_with(tmp_path, "glue/CoLA")
    path = root / "glue/CoLA/train.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[9] = json.dumps({"sentence": "A sentence.", "label": 7, "idx": 9}) + "\n"
    path.write_text("".join(lines))
    assert f"{path}, row 10: unknown label 7" in cli_fails(tmp_path, capsys, "glue/cola", root, "minilm-l6")


def test_row_that_is_not_an_object(tmp_path):
    root = data_dir_with(tmp_path, "commonsense/winogrande")
    path = root / "commonsense/winogrande/test.json"
    break_json_list(path, 3, replace_with=["not", "an", "object"])
    with pytest.raises(BenchError, match=rf"{path}, row 3: expected a JSON object"):
        get_task("commonsense/winogrande").load("test", DataSource(root))


@pytest.mark.parametrize(
    ("task_name", "relative", "empty"),
    [("commonsense/obqa", "commonsense/openbookqa/test.json", "[]"), ("glue/mrpc", "glue/MRPC/validation.jsonl", "")],
)
def test_empty_split_names_file(tmp_path, task_name, relative, empty):
    root = data_dir_with(tmp_path, relative.rsplit("/", 1)[0])
    (root / relative).write_text(empty)
    with pytest.raises(BenchError, match=rf"{root / relative}: the split is empty"):
        get_task(task_name).load("test", DataSource(root))


def test_hub_only_task_offline_through_cli(tmp_path, capsys):
    error = cli_fails(tmp_path, capsys, "glue/qnli", tmp_path, "minilm-l6")
    assert "glue/QNLI/train.jsonl is missing" in error and "nyu-mll/glue" in error


def test_row_without_its_sets_options_names_file_and_row(tmp_path):
    """A set scored by lm-eval's standard formulation must give lm-eval's document: an instruction whose option
    markers are missing is refused at load, naming the file and the row."""
    root = data_dir_with(tmp_path, "commonsense/ARC-Easy")
    path = root / "commonsense/ARC-Easy/test.json"
    instruction = json.loads(path.read_text())[1]["instruction"].replace(" Answer3: ", " ")
    break_json_list(path, 2, {"instruction": instruction})
    with pytest.raises(BenchError, match=rf"{path}, row 2: the instruction does not give lm-eval's arc_easy document"):
        get_task("commonsense/arc-e").load("test", DataSource(root))


def test_standard_task_refuses_a_mix_whose_files_name_no_set(tmp_path):
    """commonsense-standard validates on the mix's parts that have a formulation; LLM-Adapters' commonsense_170k
    interleaves the sets unnamed, so it is refused before anything runs."""
    root = data_dir_with(tmp_path, "commonsense")
    mix = root / "commonsense/commonsense_170k/commonsense_170k.json"
    mix.parent.mkdir()
    shutil.copy(root / "commonsense/ARC-Easy/train.json", mix)
    with pytest.raises(BenchError, match="no file of its mix commonsense_170k declares"):
        get_task("commonsense-standard/arc-e").load("validation", DataSource(root))
    assert get_task("commonsense/arc-e").load("validation", DataSource(root), limit=2)  # generation still trains on it
