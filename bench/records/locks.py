"""Run-key locks that hold across processes and hosts: flock where the store's filesystem has it, lock files elsewhere.

`key_lock` picks the kind for a store's `locks/` folder: `PEFT_BENCH_LOCK=flock|file` if set, else "flock" when a
probe flock on that folder succeeds, else "file". Every process on one store must use the same kind: the kinds do not
exclude each other.

- "flock": filelock's FileLock on `locks/<key>.lock`; the kernel (or the file server) drops it when its holder dies.
  Some clusters' shared filesystems accept flock but enforce it per node only: there, set `PEFT_BENCH_LOCK=file`.
- "file": `HeartbeatLock` on the folder `locks/<key>/`, made of hard links and file times only (see its docstring).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from core.errors import BenchError

LOCK_ENV = "PEFT_BENCH_LOCK"
KINDS = ("flock", "file")
NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 60.0  # a lock from another host with an older heartbeat is broken: clocks must agree within 30 s


class HeartbeatLock:
    """A lock made of numbered files in one folder, safe where flock is missing or per node (NFS, Lustre).

    The newest number is the lock's state: "held" (host, pid, token, start time; its mtime is the heartbeat, refreshed
    every `heartbeat` seconds by a daemon thread) or "free". Taking the lock, when the newest file is free or stale,
    is publishing the next number by a hard link, which fails if that name exists: exactly one contender wins it.
    Release publishes a free file as the next number; if a contender already took that number (the lock was broken),
    it changes nothing. No file is ever renamed or deleted, so breaking a stale lock can never remove a live one, and
    the numbers stay contiguous (a lagging listing is completed by looking up the names after it).

    A held file is stale when its owner is on this host and its pid is dead, or on another host and its mtime is older
    than `stale_after` seconds by this host's clock. A live process on this host keeps its lock, stopped or not.
    """

    def __init__(self, folder: str | Path, stale_after: float = STALE_SECONDS, heartbeat: float = HEARTBEAT_SECONDS):
        self.folder = Path(folder)
        self.stale_after = stale_after
        self.heartbeat = heartbeat
        self._held: Path | None = None
        self._token = ""
        self._stop = threading.Event()

    @property
    def is_locked(self) -> bool:
        return self._held is not None

    def acquire(self, timeout: float = -1, poll_interval: float = 0.5) -> HeartbeatLock:
        """Take the lock, waiting up to `timeout` seconds (forever if negative); filelock.Timeout if it stays held."""
        if self._held is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        while not self._take():
            if timeout >= 0 and time.monotonic() >= deadline:
                raise Timeout(str(self.folder))
            time.sleep(poll_interval)
        self._stop = threading.Event()
        threading.Thread(target=self._beat, args=(self._held, self._stop), daemon=True).start()
        return self

    def release(self) -> None:
        """Give the lock back; a lock that was broken meanwhile is left to its new holder."""
        if self._held is None:
            return
        self._stop.set()
        self._publish(int(self._held.name) + 1, {"state": "free", "token": self._token})
        self._held = None

    def __enter__(self) -> HeartbeatLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _take(self) -> bool:
        """One attempt: publish the number after the newest, unless the newest is held and live or a contender wins."""
        newest = self._newest()
        if newest >= 0 and self._live(self.folder / str(newest)):
            return False
        self._token = uuid.uuid4().hex
        started = datetime.now(UTC).isoformat(timespec="seconds")
        owner = {"state": "held", "host": socket.gethostname(), "pid": os.getpid(), "token": self._token}
        if not self._publish(newest + 1, owner | {"started": started}):
            return False
        self._held = self.folder / str(newest + 1)
        return True

    def _newest(self) -> int:
        """The newest number (-1 if none); names past the listing are looked up, as a listing may lag on NFS."""
        newest = max((int(name) for name in os.listdir(self.folder) if name.isdigit()), default=-1)
        while (self.folder / str(newest + 1)).exists():
            newest += 1
        return newest

    def _live(self, path: Path) -> bool:
        """Whether `path` is held by an owner that is not stale (see the class docstring)."""
        with path.open(encoding="utf-8") as stream:  # opening revalidates a network filesystem's cached mtime
            age = time.time() - os.fstat(stream.fileno()).st_mtime
            owner: dict[str, Any] = json.loads(stream.read())
        if owner["state"] != "held":
            return False
        if owner["host"] == socket.gethostname():
            return _alive(owner["pid"])
        return age < self.stale_after

    def _publish(self, number: int, content: dict[str, Any]) -> bool:
        """Create file `number` with `content` if no such file exists: written aside, then hard-linked into place."""
        draft = self.folder / f"{self._token}.draft"
        draft.write_text(json.dumps(content), encoding="utf-8")
        try:
            os.link(draft, self.folder / str(number))
            return True
        except FileExistsError:  # NFS may answer a retried link that succeeded with EEXIST: the link count tells
            return draft.stat().st_nlink == 2
        finally:
            draft.unlink()

    def _beat(self, path: Path, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat):
            with contextlib.suppress(OSError):  # a network hiccup passes; the next beat tries again
                os.utime(path)


KeyLock = FileLock | HeartbeatLock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def flock_works(folder: Path) -> bool:
    """Whether flock works on `folder`'s filesystem, by a non-blocking flock on a probe file there."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / "flock.probe", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
    except BlockingIOError:  # another process probes at this moment: its flock excludes ours
        return True
    except OSError as error:
        if error.errno in NO_FLOCK:
            return False
        raise
    finally:
        os.close(descriptor)
    return True


def lock_kind(folder: Path) -> str:
    """The kind of lock for the locks folder `folder`, "flock" or "file": `PEFT_BENCH_LOCK` if set (BenchError if it is
    neither), else what the folder's filesystem supports."""
    requested = os.environ.get(LOCK_ENV, "")
    if requested and requested not in KINDS:
        raise BenchError(
            f"{LOCK_ENV} is {requested!r}",
            "set it to flock or file, or unset it (flock where the store's filesystem supports it, else file)",
        )
    return requested or ("flock" if flock_works(folder) else "file")


def key_lock(folder: Path, key: str) -> KeyLock:
    """The (not yet acquired) lock of run key `key` in the locks folder `folder`, of the kind `lock_kind` picks."""
    if lock_kind(folder) == "flock":
        return FileLock(str(folder / f"{key}.lock"))
    return HeartbeatLock(folder / key)
