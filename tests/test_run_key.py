"""Run keys hash code, not text: a comment, docstring or formatting edit of a module keeps the key, a code edit changes it.

The modules are real files in a temporary package registered as a project package, hashed through `source_hash`
(the function run keys use), edited on disk between hashes.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from bench.run import key

PACKAGE = "keyprobe"
HELPER = '''"""Helpers."""


def scale(value: float) -> float:
    """Twice the value."""
    return 2 * value
'''
MODULE = '''"""A module a run would use."""

from keyprobe.helper import scale


class Meter:
    """Measures."""

    def reading(self, value: float) -> float:
        """The scaled value."""
        return scale(value) + 1
'''
HARMLESS = {
    "comment": MODULE.replace(
        "        return scale(value) + 1",
        "        # one more than the scaled value\n        return scale(value) + 1  # inline",
    ),
    "docstring": MODULE.replace(
        '"""The scaled value."""', '"""The scaled value, plus one:\n\n        a longer docstring."""'
    ),
    "module docstring": MODULE.replace('"""A module a run would use."""', '"""Rewritten module docstring."""'),
    "removed docstring": MODULE.replace('    """Measures."""\n\n', ""),
    "formatting": MODULE.replace(
        "return scale(value) + 1", "return (\n            scale(value)\n            + 1\n        )"
    ).replace("\n\n\nclass", "\n\nclass"),
}
REAL = {
    "constant": MODULE.replace("+ 1", "+ 2"),
    "operator": MODULE.replace("+ 1", "- 1"),
    "name": MODULE.replace("def reading", "def read"),
    "string literal used as a value": MODULE.replace(
        "return scale(value) + 1", 'label = "a"\n        return scale(value) + 1'
    ),
}


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / PACKAGE
    folder.mkdir()
    (folder / "__init__.py").write_text("", encoding="utf-8")
    (folder / "helper.py").write_text(HELPER, encoding="utf-8")
    (folder / "probe.py").write_text(MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(key, "PROJECT_PACKAGES", (*key.PROJECT_PACKAGES, PACKAGE))
    yield folder
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def key_of(folder: Path, source: str) -> str:
    (folder / "probe.py").write_text(source, encoding="utf-8")
    return key.source_hash(importlib.import_module(f"{PACKAGE}.probe").Meter)


@pytest.mark.parametrize("edit", sorted(HARMLESS))
def test_comment_docstring_and_formatting_edits_keep_the_key(package: Path, edit: str) -> None:
    original = key_of(package, MODULE)
    assert key_of(package, HARMLESS[edit]) == original


@pytest.mark.parametrize("edit", sorted(REAL))
def test_code_edits_change_the_key(package: Path, edit: str) -> None:
    original = key_of(package, MODULE)
    assert key_of(package, REAL[edit]) != original


def test_an_edit_in_an_imported_module_changes_the_key(package: Path) -> None:
    original = key_of(package, MODULE)
    (package / "helper.py").write_text(HELPER.replace("2 * value", "3 * value"), encoding="utf-8")
    assert key_of(package, MODULE) != original
    (package / "helper.py").write_text(
        HELPER.replace('"""Twice the value."""', '"""Doubles."""  # comment'), encoding="utf-8"
    )
    assert key_of(package, MODULE) == original


def test_a_string_statement_that_is_not_a_docstring_counts() -> None:
    assert key.code_digest("x = 1\n'note'\n") != key.code_digest("x = 1\n")
    assert key.code_digest('"""doc"""\nx = 1\n') == key.code_digest("x = 1\n")
