"""The layouts of the built-in offline models that ship in bench/run/layouts/ (bench.run.skeleton), and the command
that writes them: `python -m bench.run.shipped_layouts`, after changing the transformers pin."""

from __future__ import annotations

import json
from pathlib import Path

from bench.run.models import SHIPPED_LAYOUTS, describe_from_config, layout_name, model_source
from core.files import write_text_atomic
from tasks import registry


def shipped_cases() -> list[tuple[str, str, int]]:
    """(model, kind, label count) of every built-in offline model and task shape whose layout ships with the code."""
    shapes = {(task.model_kind, task.num_labels) for task in registry().values()}
    return [
        (model, kind, labels)
        for model in ("minilm-l6", "smollm2-135m")
        for kind, labels in sorted(shapes)
        if kind == "sequence-classification" or model == "smollm2-135m"
    ]


def write_shipped() -> list[Path]:
    """Write the layouts of `shipped_cases` into bench/run/layouts (run after changing the transformers pin)."""
    written = []
    for model, kind, labels in shipped_cases():
        path = SHIPPED_LAYOUTS / layout_name(Path(model_source(model)) / "config.json", kind, labels)
        write_text_atomic(path, json.dumps(describe_from_config(model, kind, labels), separators=(",", ":")))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_shipped():
        print(path)
