"""Files as the project reads and writes them: atomic writes, JSON read with a clear error, the cache folder, and
reading a file once per process for each version of it (a sweep plans hundreds of runs on the same files)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from core.errors import BenchError

T = TypeVar("T")
_READ: dict[tuple[Any, ...], Any] = {}
FILE_MODE = 0o644
CACHE_ENV = "PEFT_BENCH_CACHE"


def cache_dir() -> Path:
    """The model and calibration cache: $PEFT_BENCH_CACHE, else ~/.cache/peft-bench."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "peft-bench"))


def once_per_version(path: Path, read: Callable[[Path], T]) -> T:
    """`read(path)`, computed once per process for each version (size, modification time) of the file."""
    stat = path.stat()
    stamp = (read.__module__, read.__qualname__, str(path), stat.st_size, stat.st_mtime_ns)
    if stamp not in _READ:
        _READ[stamp] = read(path)
    return _READ[stamp]


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
