"""The deviation benchmark reads a committed decoder study run: its stored outputs line up with the test rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import protocol_deviations  # noqa: E402 - a script in benchmarks/, imported from its folder

LORA_RUN = ROOT / "results/decoder/a246c74ec0a3116d8f697810a2fff3aaf20d49614f1430faf7934375100b0aae.json"


def test_saved_run_outputs_rescore_to_its_recorded_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    saved = protocol_deviations.SavedRun.read(LORA_RUN, None)  # the committed slices start with its 80 per set
    assert len(saved.rows) == 640 and [p["index"] for p in saved.predictions] == list(range(640))
    recorded = json.loads(LORA_RUN.read_text())["metrics"]["test"]["average"]  # 80 per set: the pooled accuracy
    assert protocol_deviations.accuracy(saved.rows, [p["output"] for p in saved.predictions]) == pytest.approx(recorded)
    rows, predictions = saved.first(10)
    assert len(rows) == 80 and {row["subtask"] for row in rows} == {p["subtask"] for p in predictions}
    assert all(sum(row["subtask"] == name for row in rows) == 10 for name in {row["subtask"] for row in rows})
    protocol_deviations.split_table(saved.rows, saved.predictions, "the LoRA run")
    assert '0 of 640 outputs contain "### Response:"' in capsys.readouterr().out


def test_outputs_that_do_not_match_the_test_rows_are_refused(tmp_path: Path) -> None:
    """Outputs paired with other rows would score answers against the wrong questions."""
    key = LORA_RUN.stem
    lines = (LORA_RUN.parent / f"{key}.predictions.jsonl").read_text().splitlines()
    test = [json.loads(line) for line in lines if '"split": "test"' in line]
    test[0], test[1] = {**test[0], "answer": test[1]["answer"]}, {**test[1], "answer": test[0]["answer"]}
    (tmp_path / f"{key}.predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in test))
    (tmp_path / LORA_RUN.name).write_text(LORA_RUN.read_text())
    assert test[0]["answer"] != test[1]["answer"]  # the swap changed the pairing
    with pytest.raises(SystemExit, match="pass --data-dir with the data folder the run read"):
        protocol_deviations.SavedRun.read(tmp_path / LORA_RUN.name, None)
