"""Run-key locks on real processes: lock files exclude each other, stale ones are broken and live ones never, the probe
picks lock files where flock fails, and two sweeps on a store without flock never run a cell twice.

A process plays one on another node by answering another host name; a filesystem without working flock is played
by a sitecustomize that makes `fcntl.flock` on the store's files raise ENOLCK, or succeed without locking (a lock
enforced per node only, as seen from two nodes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from filelock import Timeout

from bench.records.locks import LOCK_ENV, HeartbeatLock
from bench.records.store import Store
from core.errors import BenchError
from tests.test_sweep import TINY, ok_records, sweep_process, write_spec

ROOT = Path(__file__).resolve().parents[1]
HOLDER = """
import socket, sys
from bench.records.locks import HeartbeatLock
folder, host, heartbeat = sys.argv[1], sys.argv[2], float(sys.argv[3])
if host:
    socket.gethostname = lambda: host
lock = HeartbeatLock(folder, heartbeat=heartbeat).acquire()
print("held", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""
WORKER = """
import sys, time
from bench.records.store import Store
for _ in range(5):
    lock = Store(sys.argv[1]).try_lock("key", wait=True)
    with open(sys.argv[2], "a") as log:
        log.write("in\\n")
    time.sleep(0.05)
    with open(sys.argv[2], "a") as log:
        log.write("out\\n")
    lock.release()
"""
FAKE_FLOCK = """
import errno, fcntl, os
real_flock = fcntl.flock
def flock(fd, operation):
    path = os.readlink(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}")
    if not path.startswith(os.environ["FAKE_FLOCK_UNDER"]):
        return real_flock(fd, operation)
    if os.environ["FAKE_FLOCK"] == "enolck":
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
fcntl.flock = flock
"""


def python(script: str, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT, text=True, **popen)


def holder(folder: Path, host: str = "", heartbeat: float = 5.0) -> subprocess.Popen:
    """A process holding the lock file `folder` (as a process on `host` if given), until told to release it."""
    process = python(HOLDER, str(folder), host, str(heartbeat), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout.readline() == "held\n"
    return process


def release(process: subprocess.Popen) -> None:
    assert process.communicate("\n", timeout=30)[0] == "released\n"


def fake_flock(monkeypatch: pytest.MonkeyPatch, folder: Path, behaviour: str) -> None:
    """Make flock on files under `folder` raise ENOLCK ("enolck") or lock nothing ("noop") in child processes."""
    site = folder / "fake-flock"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAKE_FLOCK)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(site), str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("FAKE_FLOCK_UNDER", str(folder.resolve()))
    monkeypatch.setenv("FAKE_FLOCK", behaviour)


def test_lock_files_exclude_each_other_across_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_ENV, "file")
    log = tmp_path / "log"
    workers = [python(WORKER, str(tmp_path / "store"), str(log)) for _ in range(2)]
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    assert log.read_text() == "in\nout\n" * 10


def test_try_lock_without_waiting_is_none_while_another_process_holds_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCK_ENV, "file")
    store = Store(tmp_path)
    process = holder(tmp_path / "locks" / "key")
    assert store.try_lock("key", wait=False) is None
    release(process)
    lock = store.try_lock("key", wait=False)
    assert isinstance(lock, HeartbeatLock) and lock.is_locked
    lock.release()


def test_a_lock_whose_owner_on_this_host_died_is_broken(tmp_path: Path) -> None:
    process = holder(tmp_path)
    process.kill()
    process.wait()
    HeartbeatLock(tmp_path).acquire(timeout=0).release()  # the heartbeat is fresh: the dead pid decides


def test_a_lock_from_another_host_whose_heartbeat_stopped_is_broken(tmp_path: Path) -> None:
    process = holder(tmp_path, host="node-b")
    os.kill(process.pid, signal.SIGSTOP)  # a suspended job: alive, but its heartbeat stops
    try:
        with pytest.raises(Timeout):
            HeartbeatLock(tmp_path, stale_after=1).acquire(timeout=0)
        started = time.monotonic()
        HeartbeatLock(tmp_path, stale_after=1).acquire(timeout=10, poll_interval=0.1).release()
        assert time.monotonic() - started > 0.5
    finally:
        process.kill()
        process.wait()


def test_a_live_holder_is_never_broken_while_its_heartbeat_runs(tmp_path: Path) -> None:
    process = holder(tmp_path, host="node-b", heartbeat=0.2)
    with pytest.raises(Timeout):
        HeartbeatLock(tmp_path, stale_after=1).acquire(timeout=3, poll_interval=0.1)
    release(process)


def test_release_after_the_lock_was_broken_leaves_the_new_holder_its_lock(tmp_path: Path) -> None:
    process = holder(tmp_path, host="node-b")
    os.kill(process.pid, signal.SIGSTOP)
    breaker = HeartbeatLock(tmp_path, stale_after=1).acquire(timeout=10, poll_interval=0.1)
    os.kill(process.pid, signal.SIGCONT)
    release(process)
    with pytest.raises(Timeout):
        HeartbeatLock(tmp_path).acquire(timeout=0)
    breaker.release()
    HeartbeatLock(tmp_path).acquire(timeout=0).release()


@pytest.mark.parametrize(
    ("behaviour", "requested", "kind"),
    [("", "", "flock"), ("enolck", "", "file"), ("noop", "file", "file"), ("enolck", "flock", "flock")],
)
def test_the_probe_picks_lock_files_where_flock_fails_and_the_variable_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str, requested: str, kind: str
) -> None:
    if behaviour:
        fake_flock(monkeypatch, tmp_path, behaviour)
    monkeypatch.setenv(LOCK_ENV, requested)
    probe = python(
        "import sys; from bench.records.store import Store; print(Store(sys.argv[1]).lock_kind())",
        str(tmp_path / "store"),
        stdout=subprocess.PIPE,
    )
    assert probe.communicate(timeout=30)[0] == kind + "\n"


def test_a_bad_lock_variable_names_itself_its_value_and_the_accepted_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCK_ENV, "nfs")
    with pytest.raises(BenchError, match=r"PEFT_BENCH_LOCK is 'nfs'.*flock or file"):
        Store(tmp_path).lock("key")


@pytest.mark.parametrize(
    ("behaviour", "requested"),
    [pytest.param("noop", "file", marks=pytest.mark.slow), ("enolck", "")],  # slow: a second 20 s pair of sweeps
    ids=["variable", "probe"],
)
def test_two_sweeps_on_a_store_without_flock_never_run_a_cell_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str, requested: str
) -> None:
    """With flock that locks nothing and PEFT_BENCH_LOCK=file, and with flock that fails and no variable (the probe)."""
    store = tmp_path / "store"
    fake_flock(monkeypatch, tmp_path, behaviour)
    monkeypatch.setenv(LOCK_ENV, requested)
    spec = write_spec(tmp_path, {**TINY, "seeds": [0], "budgets": ["0.1%", "0.5%"], "methods": {"lora": {}}})
    sweeps = [sweep_process(spec, store) for _ in range(2)]
    outputs = [sweep.communicate(timeout=300)[0] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], outputs
    started = Counter(event["key"] for event in Store(store).events() if event["event"] == "started")
    assert len(ok_records(store)) == 2 and all(record["status"] == "ok" for record in Store(store).records(None))
    assert set(started) == set(ok_records(store)) and set(started.values()) == {1}, started
    assert {path.name for path in (store / "locks").iterdir() if path.is_dir()} == set(started)  # lock files held them
