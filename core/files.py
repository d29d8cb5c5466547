"""Reading a file once per process for each version of it: a sweep plans hundreds of runs on the same files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_READ: dict[tuple[Any, ...], Any] = {}


def once_per_version(path: Path, read: Callable[[Path], T]) -> T:
    """`read(path)`, computed once per process for each version (size, modification time) of the file."""
    stat = path.stat()
    stamp = (read.__module__, read.__qualname__, str(path), stat.st_size, stat.st_mtime_ns)
    if stamp not in _READ:
        _READ[stamp] = read(path)
    return _READ[stamp]
