"""What a table says about where its numbers come from: the model as it ran, and rows whose seeds cannot differ.

- Model titles. A model whose record fingerprints a GGUF file (`model.fingerprint_of` names the .gguf) ran from that
  file's quantized weights, dequantized on load (bench.run.models), so its numbers are those of the quantization, not
  of the original checkpoint. Its tables and figures are titled with the file's model and quantization:
  "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)". Every other model keeps its config name.
- Rows shown once. A method that trains nothing (zero-shot: budget UNTRAINED) scores the same at every seed; when its
  seeds agree exactly, a table shows the value once, without a spread or an interval, since "± 0.0 [x, x]" would read
  as a measured seed spread, and a note says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from bench.report.plots import display_name

UNTRAINED = "none"  # the report's budget of a method that trains nothing: zero-shot's knob (bench.run.budget)
GGUF_TITLE = "{model} ({quantization}GGUF, dequantized)"
MODELS_NOTE = "Models as they ran (a table's Model column names them by config): {models}."
SHOWN_ONCE_NOTE = (
    "{methods}: nothing is trained and every seed gives the same scores, so each is shown once, without a seed spread."
)


def model_title(model: Mapping[str, Any]) -> str:
    """The title of a record's `model` section: its GGUF file's model and quantization, or its config name."""
    hashed = PurePosixPath(model.get("fingerprint_of") or "")  # "sha256 of <site-packages>/.../<file>"
    if hashed.suffix.lower() != ".gguf":
        return model["name"]
    name, _, quantization = hashed.stem.rpartition(".")
    if not name:  # no quantization in the file name
        return GGUF_TITLE.format(model=quantization, quantization="")
    return GGUF_TITLE.format(model=name, quantization=f"{quantization} ")


def model_titles(records: list[dict[str, Any]]) -> dict[str, str]:
    """Config name -> title of every model in `records` (the first record of each names it)."""
    titles: dict[str, str] = {}
    for record in records:
        titles.setdefault(record["model"]["name"], model_title(record["model"]))
    return titles


def models_note(titles: Mapping[str, str]) -> str | None:
    """The sentence naming what each config name stands for, when a title differs from its name (`model_titles`)."""
    differing = [f"{name} is {title}" for name, title in sorted(titles.items()) if title != name]
    return MODELS_NOTE.format(models="; ".join(differing)) if differing else None


def shown_once(entry: Mapping[str, Any] | pd.Series) -> bool:
    """Whether a cell aggregate (`mean`, `std`, `n`, `budget`) is an untrained method's whose seeds agree exactly."""
    return entry.get("budget") == UNTRAINED and entry["n"] > 1 and entry["std"] == 0


def shown_once_note(metric_rows: pd.DataFrame) -> str | None:
    """The note for the tables of `metric_rows` (cell aggregates per metric) when some row is shown once."""
    once = metric_rows[[shown_once(row) for _, row in metric_rows.iterrows()]]
    if once.empty:
        return None
    return SHOWN_ONCE_NOTE.format(methods=", ".join(display_name(m) for m in sorted(set(once["method"]))))
