"""Regression history: change detection on synthetic series (no change in noise, one step found where it is), and
`bench track` / `bench history` on real stores: entries written once and never rewritten, a regression flagged with
its commit range, an unchanged rerun flagged by nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.report import history
from core.errors import BenchError
from tests.test_wandb import _key, read_run

RESULTS = Path(__file__).resolve().parents[1] / "results"
SEEDS = 2
NOISE = 0.5  # points: the seed-to-seed spread of each synthetic entry


def noisy(entries: int, rng: np.random.Generator, step_at: int | None = None, step: float = 2.0) -> list[dict]:
    """Per entry, {seed: score} around 80, each seed with its own persistent offset (plus `step` from entry
    `step_at` on)."""
    offsets = rng.normal(0, 3.0, SEEDS)  # seeds differ by points, as real seeds do
    return [
        dict(
            enumerate(
                80 + offsets + (step if step_at is not None and index >= step_at else 0) + rng.normal(0, NOISE, SEEDS)
            )
        )
        for index in range(entries)
    ]


@pytest.mark.parametrize("seed", range(20))
def test_noise_alone_raises_no_change(seed: int) -> None:
    assert history.change_points(noisy(10, np.random.default_rng(seed)), "score") == []


@pytest.mark.parametrize("seed", range(20))
def test_a_two_point_step_is_found_once_where_it_is(seed: int) -> None:
    found = history.change_points(noisy(10, np.random.default_rng(seed), step_at=6), "score")
    assert [at for at, _ in found] == [6], found


def test_bit_identical_reruns_change_only_where_a_value_moved() -> None:
    same = [{0: 80.0, 1: 74.0}] * 5
    assert history.change_points(same, "score") == []
    assert history.change_points(same + [{0: 82.0, 1: 76.0}] * 3, "score") == [(5, 0.0)]
    assert history.change_points(same + [{0: 80.5, 1: 74.5}] * 3, "score") == []  # under the 1-point floor


def _entry(store: Path, commit: str, date: str, shift: float = 0.0) -> Path:
    """A copy of `store` whose records claim `commit` and `date`, with every test score moved by `shift` points."""
    copy = store.parent / f"{store.name}-{commit[:6]}"
    shutil.copytree(RESULTS / "default", copy, ignore=shutil.ignore_patterns("report", "wandb", "logs", "locks"))
    for path in copy.glob("*.json"):
        record = json.loads(path.read_text())
        if "run_key" not in record or record["run_key"] != path.stem:
            continue
        record["env"]["git"]["commit"] = commit
        record["created_at"] = date
        metric = record["task"]["primary_metric"]
        record["metrics"]["test"][metric] += shift / 100
        path.write_text(json.dumps(record))
    return copy


def test_track_and_history_flag_a_regression_with_its_commit_range(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "history"
    commits = [f"{i:02d}" * 20 for i in range(6)]
    for index, commit in enumerate(commits):
        shift = -3.0 if index >= 4 else 0.0  # the change lands between commits[3] and commits[4]
        store = _entry(tmp_path / "store", commit, f"2026-12-0{index + 1}T00:00:00+00:00", shift)
        assert main(["track", str(store), "--history", str(folder)]) == 0
    entries = sorted((folder / "default").glob("*.json"))
    assert len(entries) == 6
    written = {path: path.read_bytes() for path in entries}
    assert main(["track", str(store), "--history", str(folder)]) == 0  # the same entry again: nothing rewritten
    assert {path: path.read_bytes() for path in sorted((folder / "default").glob("*.json"))} == written
    capsys.readouterr()
    assert main(["history", str(folder / "default")]) == 0
    out = capsys.readouterr().out
    changes = history.detect_changes(history.read_history(folder / "default"))
    assert changes and {change.at for change in changes} == {4}
    assert {change.commits for change in changes} == {(commits[3], commits[4])}
    assert all(change.after < change.before for change in changes)
    assert f"{commits[3][:8]}..{commits[4][:8]}" in out
    assert (folder / "default" / "trend" / "trend.png").stat().st_size > 0
    assert main(["history", str(folder / "default"), "--wandb"]) == 0
    (run,) = (folder / "default" / "trend" / "wandb").glob("offline-run-*")
    updates = [
        record.config if record.WhichOneof("record_type") == "config" else record.run.config
        for record in read_run(run)
        if record.WhichOneof("record_type") in ("config", "run")
    ]
    config = {_key(item) for update in updates for item in update.update}
    assert {f"_wandb/visualize/history/{quantity}" for quantity in history.QUANTITIES} <= config


def test_an_unchanged_rerun_is_flagged_by_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "history"
    for index in range(5):
        store = _entry(tmp_path / "store", f"{index:02d}" * 20, f"2026-12-0{index + 1}T00:00:00+00:00")
        history.track(store, folder)
    assert history.detect_changes(history.read_history(folder / "default")) == []


def test_a_store_of_two_commits_is_refused(tmp_path: Path) -> None:
    store = _entry(tmp_path / "store", "ab" * 20, "2026-12-01T00:00:00+00:00")
    path = next(p for p in sorted(store.glob("*.json")) if len(p.stem) == 64)
    record = json.loads(path.read_text())
    record["env"]["git"]["commit"] = "cd" * 20
    path.write_text(json.dumps(record))
    with pytest.raises(BenchError, match="2 different commits"):
        history.history_entry(store)
