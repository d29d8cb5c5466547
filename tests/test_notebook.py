"""The analysis notebooks execute on real results stores (through the venv's own ipykernel)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_sweep import tiny_store

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def executed_text(name: str) -> str:
    """Run notebook `name` top to bottom; the text it printed. Fails on any cell's error."""
    path = NOTEBOOKS / name
    notebook = nbformat.read(path, as_version=4)
    # "python3" is ipykernel's native kernel: jupyter_client runs it with this interpreter, so a fresh venv needs no
    # registered kernelspec and no network.
    NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    return "".join(output.get("text", "") for output in outputs)


def test_plateau_notebook_executes_on_a_store(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tiny_store(tmp_path_factory.getbasetemp())["store"]
    monkeypatch.setenv("PEFT_BENCH_STORE", str(store))
    monkeypatch.setenv("PEFT_BENCH_FIGURES", str(tmp_path / "figures"))
    text = executed_text("plateau_analysis.ipynb")
    assert "4 runs in 2 cells" in text and "not identifiable" in text
    assert sorted(path.suffix for path in (tmp_path / "figures").iterdir()).count(".png") == 2


def test_label_prior_notebook_executes_on_the_committed_decoder_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PEFT_BENCH_DATA", raising=False)  # the committed slices
    monkeypatch.delenv("PEFT_BENCH_STORE", raising=False)  # results/decoder
    text = executed_text("decoder_label_prior.ipynb")
    assert "per supervised token" in text
    assert int(text.split(" runs of commonsense/all")[0].split()[-1]) >= 11  # the learning-rate grid's records
