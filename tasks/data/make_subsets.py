"""Rebuild the committed compact subsets in tasks/data/ from a full data root laid out the same way.

    python tasks/data/make_subsets.py /path/to/full/data

Each subset is the FIRST n rows of the full file (no sampling, so it is reproducible): `.jsonl` lines are copied
byte for byte, `.json` lists are re-written with the same 4-space indentation. License files are copied whole.
`math/math_data/math_data.json` keeps only rows that share a 13-gram with the committed AddSub, MultiArith and
SingleEq slices: it exists to show the leakage guard catching LLM-Adapters' math training data overlapping those
test sets. Prints the inventory table of PROVENANCE.md.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from tasks.leakage import ngrams  # noqa: E402

FIRST_ROWS = {
    "glue/CoLA/train.jsonl": 2000,
    "glue/CoLA/validation.jsonl": None,
    "glue/SST-2/train.jsonl": 4000,
    "glue/SST-2/validation.jsonl": None,
    "glue/MRPC/train.jsonl": 600,
    "glue/MRPC/validation.jsonl": None,
    "glue/RTE/train.jsonl": 500,
    "glue/RTE/validation.jsonl": None,
    "glue/STS-B/train.jsonl": 1000,
    "glue/STS-B/validation.jsonl": None,
    **{
        f"commonsense/{name}/test.json": 150
        for name in (
            "boolq",
            "piqa",
            "social_i_qa",
            "hellaswag",
            "winogrande",
            "ARC-Easy",
            "ARC-Challenge",
            "openbookqa",
        )
    },
    **{f"commonsense/{name}/train.json": 250 for name in ("boolq", "ARC-Easy", "ARC-Challenge", "openbookqa")},
    **{f"math/{name}/test.json": 150 for name in ("gsm8k", "SVAMP", "AQuA", "AddSub", "MultiArith", "SingleEq")},
    "math/mawps/test.json": None,
    "math/gsm8k_original/train.jsonl": 500,
    "math/mawps/trainset.json": 500,
}
LICENSES = [
    "commonsense/LLM-Adapters_DATA_LICENSE",
    "commonsense/hellaswag/LICENSE.klosax_hellaswag_text_data",
    "commonsense/hellaswag/LICENSE.rowanz_hellaswag",
    "math/LLM-Adapters_DATA_LICENSE",
    "math/gsm8k_original/LICENSE",
]
LEAKY_TESTS = ("AddSub", "MultiArith", "SingleEq")


def write_first_rows(full: Path, relative: str, count: int | None) -> None:
    target = HERE / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if relative.endswith(".jsonl"):
        lines = (full / relative).read_bytes().splitlines(keepends=True)
        target.write_bytes(b"".join(lines[:count]))
    else:
        rows = json.loads((full / relative).read_text(encoding="utf-8"))
        write_json(target, rows[:count])


def write_json(target: Path, rows: list) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(rows, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")


def leaky_math_data(full: Path) -> list:
    test_grams = set().union(
        *(
            ngrams(row["instruction"])
            for name in LEAKY_TESTS
            for row in json.loads((HERE / f"math/{name}/test.json").read_text())
        )
    )
    rows = json.loads((full / "math/math_data/math_data.json").read_text(encoding="utf-8"))
    return [row for row in rows if ngrams(row["instruction"]) & test_grams][:120]


def main(full: Path) -> None:
    for relative, count in FIRST_ROWS.items():
        write_first_rows(full, relative, count)
    for relative in LICENSES:
        shutil.copyfile(full / relative, HERE / relative)
    write_json(HERE / "math/math_data/math_data.json", leaky_math_data(full))
    print("| path | bytes | rows | of | sha256 (first 16 hex) |\n|---|---:|---:|---:|---|")
    for path in sorted(
        p for p in HERE.rglob("*") if p.is_file() and (p.suffix in (".json", ".jsonl") or "LICENSE" in p.name)
    ):
        relative = path.relative_to(HERE).as_posix()
        rows = of = ""
        if path.suffix in (".json", ".jsonl"):
            rows = len(path.read_text().splitlines()) if path.suffix == ".jsonl" else len(json.loads(path.read_text()))
            source = full / relative
            of = (
                (
                    len(source.read_text().splitlines())
                    if path.suffix == ".jsonl"
                    else len(json.loads(source.read_text()))
                )
                if source.is_file()
                else ""
            )
        print(
            f"| {relative} | {path.stat().st_size} | {rows} | {of} | {hashlib.sha256(path.read_bytes()).hexdigest()[:16]} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
