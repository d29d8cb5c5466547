"""The result record: one self-describing JSON per run, its content key, and atomic writes.

Schema version 1 (documented in README.md, "Result records"). The record's file name is its `run_key`, a
sha256 over everything that determines the run: resolved config, method options, data file hashes, the code
(syntax tree, docstrings excluded) of every project module the method and task use, library versions and the model fingerprint.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

from core import plugins
from core.errors import BenchError
from core.files import once_per_version

SCHEMA_VERSION = 1
FILE_MODE = 0o644


PROJECT_PACKAGES = ("bench", "core", "methods", "tasks")


def project_modules(*objects: Any) -> list[ModuleType]:
    """The project modules defining `objects` (modules, classes, functions or instances) and every project module
    they reach through their imports, transitively, sorted by name; plugin modules (core.plugins) count as project
    modules. Packages (`methods`, `tasks`: registries that
    reach every method and task) are not followed, so a run depends on the code it uses, not on its neighbours'."""
    found: dict[str, ModuleType] = {}
    plugin_code = plugins.plugin_prefixes()
    pending = [
        obj
        if inspect.ismodule(obj)
        else inspect.getmodule(obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj))
        for obj in objects
    ]
    while pending:
        module = pending.pop()
        if (
            module is None
            or module.__name__ in found
            or not (module.__name__.split(".")[0] in PROJECT_PACKAGES or _within(module.__name__, plugin_code))
            or hasattr(module, "__path__")
        ):
            continue
        found[module.__name__] = module
        for value in vars(module).values():
            if inspect.ismodule(value):
                pending.append(value)
            elif inspect.isclass(value) or inspect.isfunction(value):
                pending.append(inspect.getmodule(value))
    return [found[name] for name in sorted(found)]


def code_digest(source: str) -> str:
    """sha256 of Python source by its syntax tree without docstrings: comments, docstrings and formatting do not count."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and ast.get_docstring(node, clean=False) is not None
        ):
            node.body = node.body[1:]
    return hashlib.sha256(ast.dump(tree, annotate_fields=True, include_attributes=False).encode()).hexdigest()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def source_hash(*objects: Any) -> str:
    """sha256 over the code (`code_digest`) of every project module that `objects` depend on (see `project_modules`)."""
    digest = hashlib.sha256()
    for module in project_modules(*objects):
        digest.update(module.__name__.encode())
        digest.update(once_per_version(Path(inspect.getsourcefile(module)), _file_digest).encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    return code_digest(path.read_text(encoding="utf-8"))


def _stable(value: Any) -> str:
    """JSON fallback that is the same in every process: functions and classes by qualified name."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return str(value)


def content_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=_stable).encode()).hexdigest()


def check_writable(directory: Path) -> None:
    """BenchError unless `directory` is, or could be created as, a writable folder; leaves nothing behind."""
    probe = Path(directory).resolve()
    while not probe.exists():
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(probe)
        with tempfile.TemporaryFile(dir=probe):  # a real write: permissions, read-only mounts, ACLs
            pass
    except OSError:
        raise BenchError(
            f"output directory {directory} is not writable ({probe} is not a writable folder)",
            "pass --out with a folder you can write to",
        ) from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, so a reader never sees half a file.

    The file is readable by everyone (0644), like any file the project writes, not private as mkstemp makes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.fchmod(handle, FILE_MODE)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a run record (ok or failed) with this machine's folders named, not spelled out (see `portable`): a model
    source reads `<site-packages>/...` or `<cache>/models/...`, a traceback `<project>/bench/...`."""
    from bench.environment import portable

    write_text_atomic(path, portable(json.dumps(record, indent=2, default=str)) + "\n")


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))


def read_json(path: Path) -> Any:
    """The JSON content of `path`; BenchError naming the file if it is not UTF-8 JSON (truncated, overwritten, binary)."""
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptFile(path, f"{type(error).__name__}: {str(error).splitlines()[0]}") from None


class CorruptFile(BenchError):
    """A store, baseline or spec file that cannot be read as what it claims to be; `path` names it."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"{path} is corrupt ({reason})",
            "restore it, or delete it to recompute its run (a sweep moves such files to <store>/quarantine/)",
        )
        self.path = Path(path)


def is_record(data: Any) -> bool:
    return isinstance(data, dict) and "schema_version" in data and "run_key" in data


def check_record(path: Path, data: Any) -> dict[str, Any]:
    """`data` read from `path`, if it is a record this code can read; BenchError naming the file otherwise."""
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BenchError(
            f"record {path} has schema version {data.get('schema_version')!r}; this peft-bench reads version {SCHEMA_VERSION} only",
            "read it with the peft-bench version that wrote it, or move it out of the store and rerun its cell",
        )
    if data.get("status") not in ("ok", "failed") or not isinstance(data.get("config"), dict):
        raise CorruptFile(path, "a record without a known status or a config")
    return data


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every run record (`*.json` with a `schema_version`) directly under `directory`; BenchError naming a corrupt one."""
    records = []
    for path in sorted(Path(directory).glob("*.json")):
        data = read_json(path)
        if is_record(data):
            records.append(check_record(path, data))
    return records
