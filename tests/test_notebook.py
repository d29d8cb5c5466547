"""notebooks/plateau_analysis.ipynb executes on a real results store (through the venv's own ipykernel)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_sweep import tiny_store

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "plateau_analysis.ipynb"


def test_plateau_notebook_executes_on_a_store(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tiny_store(tmp_path_factory.getbasetemp())["store"]
    monkeypatch.setenv("PEFT_BENCH_STORE", str(store))
    monkeypatch.setenv("PEFT_BENCH_FIGURES", str(tmp_path / "figures"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # "python3" is ipykernel's native kernel: jupyter_client runs it with this interpreter, so a fresh venv needs no
    # registered kernelspec and no network.
    NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs)
    assert "4 runs in 2 cells" in text and "too few points" in text
    assert sorted(path.suffix for path in (tmp_path / "figures").iterdir()).count(".png") == 2
