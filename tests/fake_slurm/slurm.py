"""A fake SLURM on one machine: `sbatch`, `squeue`, `sacct`, `scancel`, `scontrol` and `srun` for tests.

The executables beside this file (`sbatch`, ...) run `python slurm.py COMMAND ARGS`. Put this folder first on PATH and
point `FAKE_SLURM_DIR` at an empty folder (the `fake_slurm` fixture of tests/conftest.py does both), and submitit's
SLURM executor runs unchanged: its sbatch scripts, its array jobs, its sacct polling, its preemption handler.

- `sbatch [OPTIONS] SCRIPT`: reads `#SBATCH` lines (command-line options win), prints `Submitted batch job N`
  (`--parsable`: `N`) and starts one background runner per array task. `--array=0-3%2` (ranges, lists, `:step`,
  `%limit`: at most that many tasks of the array run at once, lowest index first), `--nodes`, `--ntasks-per-node`,
  `--ntasks`, `--cpus-per-task`, `--job-name`, `--output`, `--error` (`%A %a %j %x %N %u %%`), `--time` (minutes,
  `M:S`, `H:M:S`, `D-H[:M[:S]]`) and `--signal=[B:]SIG@SECONDS` are honoured; other options are accepted and ignored.
- A job starts a second after its submission at the earliest (a scheduler's cycle; submitit makes the job's folder
  after sbatch returns), and fails if its output file cannot be opened, as with SLURM.
- The runner runs the script with bash in the submitter's directory and environment plus what SLURM sets
  (SLURM_JOB_ID, SLURM_ARRAY_JOB_ID, SLURM_ARRAY_TASK_ID, SLURM_JOB_NAME, SLURM_NNODES, SLURM_JOB_NUM_NODES,
  SLURM_JOB_NODELIST, SLURM_NTASKS, SLURM_NTASKS_PER_NODE, SLURM_CPUS_PER_TASK, SLURM_RESTART_COUNT, ...). An array task
  has its own SLURM_JOB_ID (the array's id plus its index); its name in sacct/squeue is `ARRAY_INDEX`. Node i of a job
  is called `127.0.0.<i+1>` (every loopback address reaches this machine), so the first node is a usable MASTER_ADDR.
- `srun [--nodes N] [--ntasks-per-node M] [--ntasks K] [--output F] [--error F] COMMAND`: inside a job, starts the
  step's tasks (the job's nodes × tasks per node unless given) as local processes, each in its own process group, with
  SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, SLURMD_NODENAME per task (`%t`, `%n` in file names); it waits for them,
  stops the others when one fails (as `--kill-on-bad-exit=1`) and exits with the first failure's code.
- Time limit: `--signal=SIG@S` sends SIG to the step tasks (`B:SIG@S`: to the batch shell) S seconds before the
  limit; at the limit the job ends in state TIMEOUT.
- `scancel JOB`: the job ends CANCELLED (a pending one never starts). `scancel --signal=SIG JOB` (`-s SIG`) only
  delivers SIG to the job's step tasks (`--batch`: to the batch shell, `--full`: to both), as SLURM does.
- `scontrol requeue JOB`: the job's processes get SIGTERM (state REQUEUED), and once they have exited the script runs
  again with SLURM_RESTART_COUNT one higher (PENDING, then RUNNING). A finished job is requeued at once.
- Ending a job (cancel, requeue): half a second after the command (which has returned by then, even when the job
  itself ran it), SIGCONT and SIGTERM to its processes, SIGKILL `FAKE_SLURM_KILL_WAIT` seconds later (default 10,
  SLURM's KillWait).
- `sacct [-j JOB ...] [-o FIELDS] [--parsable2] [-n]`: JobID, JobIDRaw, JobName, State, ExitCode, NodeList, Restarts,
  Submit, Start, End; one line per job or array task. `squeue [-j JOBS] [-o FORMAT] [-h] [-t STATES]`: the jobs not
  finished, formats `%i %A %K %j %T %t %D %N %r`.
- JOB is `N` (a job, or every task of array N), `N_I` (one array task) or an array task's own SLURM_JOB_ID.

State, under `$FAKE_SLURM_DIR`: `jobs/<id>.json` (one per job or array task: its state, restarts, process groups,
options), `calls.jsonl` (every command run, with its arguments: tests count `sbatch` calls), `next_id`, `lock`.
Only the standard library is used.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

LIVE = ("PENDING", "RUNNING", "REQUEUED")
STATE_CODES = {"PENDING": "PD", "RUNNING": "R", "REQUEUED": "RQ"}
FIELDS = "JobID,State,NodeList"  # sacct's default fields here
FORMAT = "%i %j %T %D %N"  # squeue's default format here
COLUMNS = {"i": ("JOBID", "id"), "A": ("ARRAY_JOB_ID", "array_job_id"), "K": ("ARRAY_TASK_ID", "array_task_id")}
COLUMNS |= {"j": ("NAME", "name"), "T": ("STATE", "state"), "D": ("NODES", "nodes")}
COLUMNS |= {"t": ("ST", None), "N": ("NODELIST", None), "r": ("REASON", None)}
PR_SET_PDEATHSIG = 1
SCHEDULING_S = 1.0  # a job starts no sooner than this after its submission: submitit makes its folders meanwhile
REACTION = 0.5  # seconds from `scancel`/`scontrol requeue` to the job's SIGTERM: the command itself has returned
# per command: short options -> long names, and the options that take no value
JOB_SHORT = {"-a": "array", "-J": "job-name", "-N": "nodes", "-n": "ntasks", "-c": "cpus-per-task", "-o": "output"}
JOB_SHORT |= {"-e": "error", "-t": "time", "-p": "partition"}
JOB_FLAGS = {"parsable", "requeue", "no-requeue", "exclusive", "unbuffered", "wait", "kill-on-bad-exit"}
QUERY_SHORT = {"-j": "jobs", "-o": "format", "-t": "states", "-u": "user", "-P": "parsable2", "-p": "parsable"}
QUERY_SHORT |= {"-n": "noheader", "-h": "noheader", "-r": "array", "-X": "allocations", "-a": "allusers"}
QUERY_FLAGS = {"parsable2", "parsable", "noheader", "array", "allocations", "allusers", "me", "long"}
SCANCEL_SHORT = {"-s": "signal", "-b": "batch", "-f": "full"}
SCANCEL_FLAGS = {"batch", "full"}


def root() -> Path:
    return Path(os.environ["FAKE_SLURM_DIR"])


@contextmanager
def locked() -> Iterator[None]:
    """Hold the state folder's lock: every read-modify-write of a job happens under it."""
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def job_path(job_id: str) -> Path:
    return root() / "jobs" / f"{job_id}.json"


def load(job_id: str) -> dict[str, Any]:
    return json.loads(job_path(job_id).read_text())


def save(job: dict[str, Any]) -> None:
    path = job_path(job["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(job, indent=1))
    partial.replace(path)


def jobs() -> list[dict[str, Any]]:
    return sorted(
        (json.loads(path.read_text()) for path in (root() / "jobs").glob("*.json")),
        key=lambda job: (int(job["array_job_id"] or job["job_id"]), job["array_task_id"] or 0),
    )


def select(name: str) -> list[dict[str, Any]]:
    """The jobs a JOB argument names: a job, every task of an array, one task (`N_I`), or a task's own job id."""
    return [job for job in jobs() if name in (job["id"], job["array_job_id"], job["job_id"])]


def parse(
    args: list[str], short: dict[str, str], flags: set[str], anywhere: bool = False
) -> tuple[dict[str, str], list[str]]:
    """`--name=value`, `--name value`, `-x value`, `-xvalue` and flags; (options, the other words). Options stop at the
    first other word (sbatch's script, srun's command) unless `anywhere`; a repeated option adds to a list (`-j 1 -j 2`
    is `jobs: "1,2"`)."""
    options: dict[str, str] = {}
    words: list[str] = []
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if not word.startswith("-"):
            if not anywhere:
                return options, args[index - 1 :]
            words.append(word)
            continue
        name, sep, value = word.partition("=")
        if name not in short and not name.startswith("--"):  # -n2
            name, value, sep = name[:2], name[2:], "="
        key = short.get(name, name.lstrip("-"))
        if key in flags:
            value = "1"
        elif not sep:
            value, index = args[index], index + 1
        options[key] = f"{options[key]},{value}" if key in options else value
    return options, words


def script_options(script: str) -> dict[str, str]:
    """The `#SBATCH` options at the top of a batch script (they stop at its first command, as sbatch's do)."""
    words = []
    for line in script.splitlines()[1:]:
        if line.startswith("#SBATCH"):
            words += shlex.split(line[len("#SBATCH") :])
        elif line.strip() and not line.startswith("#"):
            break
    return parse(words, JOB_SHORT, JOB_FLAGS)[0]


def array_indices(spec: str) -> tuple[list[int], int | None]:
    """`0-3%2`, `1,4,7`, `0-10:5` -> (indices, most tasks at once)."""
    spec, _, limit = spec.partition("%")
    indices = []
    for part in spec.split(","):
        span, _, step = part.partition(":")
        low, _, high = span.partition("-")
        indices += range(int(low), int(high or low) + 1, int(step or 1))
    return indices, int(limit) if limit else None


def seconds(limit: str) -> float | None:
    """SLURM's time formats: minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S; None for no limit."""
    if not limit or limit.upper() in ("INFINITE", "UNLIMITED"):
        return None
    days, dash, rest = limit.partition("-")
    if not dash:
        days, rest = "0", limit
    parts = [int(part) for part in rest.split(":")]
    if dash:
        hours, minutes, secs = (*parts, 0, 0)[:3]
    else:
        hours, minutes, secs = {1: (0, parts[0], 0), 2: (0, *parts), 3: tuple(parts)}[len(parts)]
    return ((int(days) * 24 + hours) * 60 + minutes) * 60 + secs


def next_ids(count: int) -> int:
    """Reserve `count` job ids; the first. Ids start at a random four-digit number, so that Lightning's SLURM port
    (15000 + the id's last four digits) differs between test sessions on one machine."""
    path = root() / "next_id"
    first = int(path.read_text()) if path.exists() else 1000 + int.from_bytes(os.urandom(2)) % 8000
    path.write_text(str(first + count))
    return first


def log_call(command: str, args: list[str]) -> None:
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / "calls.jsonl", "a") as stream:
        stream.write(json.dumps({"command": command, "args": args, "time": time.time()}) + "\n")


def sbatch(args: list[str]) -> int:
    options, rest = parse(args, JOB_SHORT, JOB_FLAGS)
    if not rest:
        print("sbatch: error: no batch script given", file=sys.stderr)
        return 1
    script = Path(rest[0]).read_text()
    options = script_options(script) | options
    indices, limit = array_indices(options["array"]) if "array" in options else ([None], None)
    nodes = int(options.get("nodes", "1").split("-")[0])
    per_node = int(options.get("ntasks-per-node", 0)) or max(1, int(options.get("ntasks", 1)) // nodes)
    with locked():
        first = next_ids(len(indices))
        for offset, index in enumerate(indices):
            job_id = str(first + offset)
            save(
                {
                    "id": job_id if index is None else f"{first}_{index}",
                    "job_id": job_id,
                    "array_job_id": None if index is None else str(first),
                    "array_task_id": index,
                    "array_limit": limit,
                    "name": options.get("job-name", Path(rest[0]).name),
                    "script": str(Path(rest[0]).resolve()),
                    "script_args": rest[1:],
                    "cwd": os.getcwd(),
                    "options": options,
                    "nodes": nodes,
                    "tasks_per_node": per_node,
                    "state": "PENDING",
                    "restarts": 0,
                    "exit_code": "0:0",
                    "submit": time.time(),
                    "groups": {"batch": None, "steps": []},
                }
            )
    for offset, index in enumerate(indices):
        start_runner(str(first + offset) if index is None else f"{first}_{index}")
    print(first if "parsable" in options else f"Submitted batch job {first}")
    return 0


def start_runner(key: str) -> None:
    """The background process that runs job `key` (`run`), detached from the command that starts it."""
    subprocess.Popen(
        [sys.executable, __file__, "_run", key],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def node_names(job: dict[str, Any]) -> list[str]:
    return [f"127.0.0.{index + 1}" for index in range(job["nodes"])]


def expand(pattern: str, job: dict[str, Any], **more: Any) -> str:
    """A file name pattern with SLURM's `%` fields filled in."""
    fields = {
        "A": job["array_job_id"] or job["job_id"],
        "a": job["array_task_id"] if job["array_task_id"] is not None else "4294967294",
        "j": job["job_id"],
        "x": job["name"],
        "u": os.environ.get("USER", "root"),
        "N": node_names(job)[0],
        "%": "%",
        **more,
    }
    return re.sub(r"%([%AajxuNnts])", lambda match: str(fields.get(match.group(1), match.group(0))), pattern)


def job_environment(job: dict[str, Any]) -> dict[str, str]:
    """The submitter's environment with the variables SLURM sets for a batch script."""
    nodes, per_node = job["nodes"], job["tasks_per_node"]
    environment = {name: value for name, value in os.environ.items() if not name.startswith("SLURM")}
    environment |= {
        "SLURM_JOB_ID": job["job_id"],
        "SLURM_JOBID": job["job_id"],
        "SLURM_JOB_NAME": job["name"],
        "SLURM_NNODES": str(nodes),
        "SLURM_JOB_NUM_NODES": str(nodes),
        "SLURM_JOB_NODELIST": ",".join(node_names(job)),
        "SLURM_NODELIST": ",".join(node_names(job)),
        "SLURM_NTASKS": str(nodes * per_node),
        "SLURM_NPROCS": str(nodes * per_node),
        "SLURM_NTASKS_PER_NODE": str(per_node),
        "SLURM_TASKS_PER_NODE": f"{per_node}(x{nodes})" if nodes > 1 else str(per_node),
        "SLURM_RESTART_COUNT": str(job["restarts"]),
        "SLURM_SUBMIT_DIR": job["cwd"],
        "SLURM_CLUSTER_NAME": "fake",
        "SLURM_JOB_PARTITION": job["options"].get("partition", "fake"),
        "SLURM_NODEID": "0",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURMD_NODENAME": node_names(job)[0],
    }
    if "cpus-per-task" in job["options"]:
        environment["SLURM_CPUS_PER_TASK"] = job["options"]["cpus-per-task"]
    if job["array_job_id"] is not None:
        environment |= {"SLURM_ARRAY_JOB_ID": job["array_job_id"], "SLURM_ARRAY_TASK_ID": str(job["array_task_id"])}
    return environment


def may_start(job: dict[str, Any]) -> bool:
    """Whether a pending job may start now: a scheduling cycle after its submission, within its array's limit
    (lowest index first)."""
    if time.time() < job["submit"] + SCHEDULING_S:
        return False
    if job["array_limit"] is None:
        return True
    array = [other for other in jobs() if other["array_job_id"] == job["array_job_id"]]
    running = sum(other["state"] in ("RUNNING", "REQUEUED") for other in array)
    pending = [other["array_task_id"] for other in array if other["state"] == "PENDING"]
    return job["array_task_id"] in pending[: max(0, job["array_limit"] - running)]


def run(key: str) -> int:
    """The runner of one job (started by sbatch): start it when it may, supervise it, run it again when requeued."""
    while True:
        while True:
            with locked():
                job = load(key)
                if job["state"] != "PENDING":
                    return 0  # cancelled while pending
                if may_start(job):
                    job |= {"state": "RUNNING", "start": time.time(), "end": None, "ending": None}
                    save(job)
                    break
            time.sleep(0.2)
        try:
            process = start_batch(job)
        except OSError as error:  # SLURM cannot open the output file (its folder is missing): the job fails
            with locked():
                save(load(key) | {"state": "FAILED", "end": time.time(), "exit_code": "1:0", "reason": str(error)})
            return 1
        with locked():
            job = load(key) | {"groups": {"batch": process.pid, "steps": []}}
            save(job)
        state = supervise(key, process)
        with locked():
            job = load(key)
            if job.get("requeue"):
                job |= {"state": "PENDING", "restarts": job["restarts"] + 1, "requeue": False}
                save(job)
                continue
            code = process.returncode
            job |= {"state": state, "end": time.time(), "exit_code": f"{max(code, 0)}:{max(-code, 0)}"}
            job["groups"] = {"batch": None, "steps": []}
            save(job)
            return 0


def start_batch(job: dict[str, Any]) -> subprocess.Popen:
    """The job's batch script under bash, in its own process group, its output where `--output`/`--error` say."""
    output = expand(job["options"].get("output", "slurm-%A_%a.out" if job["array_job_id"] else "slurm-%j.out"), job)
    error = expand(job["options"]["error"], job) if "error" in job["options"] else output
    with open(Path(job["cwd"], output), "a") as out, open(Path(job["cwd"], error), "a") as err:
        return subprocess.Popen(
            ["bash", job["script"], *job["script_args"]],
            cwd=job["cwd"],
            env=job_environment(job),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def supervise(key: str, process: subprocess.Popen) -> str:
    """Wait for a job's batch shell and every step task; send its `--signal` before the time limit, end it at the
    limit or once it is cancelled or requeued. The state it ends in, unless requeued."""
    job = load(key)
    limit = seconds(job["options"].get("time", ""))
    deadline = None if limit is None else job["start"] + limit
    target, _, rest = job["options"].get("signal", "").rpartition(":")
    name, _, before = rest.partition("@")
    warning = None if deadline is None or not name else deadline - int(before or 60)
    ending, state = None, "COMPLETED"
    while process.poll() is None or alive(load(key)):
        job = load(key)
        now = time.time()
        if warning is not None and now >= warning:
            deliver(job, name, batch=target == "B", steps=target != "B")
            warning = None
        if deadline is not None and now >= deadline and ending is None:
            state, ending = "TIMEOUT", now
            deliver(job, "TERM", batch=True, steps=True)
        if job.get("ending") and ending is None and now >= job["ending"] + REACTION:  # cancelled or requeued
            ending = job["ending"]
            deliver(job, "CONT", batch=True, steps=True)
            deliver(job, "TERM", batch=True, steps=True)
        if ending is not None and now >= ending + kill_wait():
            deliver(job, "KILL", batch=True, steps=True)
        time.sleep(0.2)
    if load(key).get("cancelled"):
        return "CANCELLED"
    return state if state == "TIMEOUT" or process.returncode == 0 else "FAILED"


def kill_wait() -> float:
    return float(os.environ.get("FAKE_SLURM_KILL_WAIT", "10"))


def alive(job: dict[str, Any]) -> bool:
    """Whether any process group of the job's step tasks still exists."""
    for group in job["groups"]["steps"]:
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            continue
        return True
    return False


def signal_number(name: str) -> int:
    name = name.upper()
    return int(name) if name.isdigit() else signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]


def deliver(job: dict[str, Any], name: str, batch: bool, steps: bool) -> None:
    """Send a signal to the process groups of the job's batch shell and/or of its step tasks."""
    groups = ([job["groups"]["batch"]] if batch else []) + (job["groups"]["steps"] if steps else [])
    for group in filter(None, groups):
        signal_group(group, signal_number(name))


def signal_group(group: int, number: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, number)


def end(job: dict[str, Any], **marks: Any) -> None:
    """Mark a job cancelled or requeued: its runner ends it (`supervise`)."""
    save(job | marks | {"ending": time.time()})


def scancel(args: list[str]) -> int:
    options, names = parse(args, SCANCEL_SHORT, SCANCEL_FLAGS, anywhere=True)
    with locked():
        for job in [job for name in names for job in select(name)]:
            if "signal" in options:
                steps = "batch" not in options or "full" in options
                deliver(job, options["signal"], batch="batch" in options or "full" in options, steps=steps)
            elif job["state"] == "PENDING":
                save(job | {"state": "CANCELLED", "cancelled": True, "end": time.time()})
            elif job["state"] in LIVE:
                end(job, cancelled=True, requeue=False)
    return 0


def scontrol(args: list[str]) -> int:
    if args[:1] != ["requeue"] or len(args) < 2:
        print(f"scontrol: this fake knows `requeue JOB` only, not {' '.join(args)}", file=sys.stderr)
        return 1
    with locked():
        for job in [job for name in args[1].split(",") for job in select(name)]:
            if job["state"] in ("RUNNING", "REQUEUED"):
                end(job, state="REQUEUED", requeue=True)
            elif job["state"] not in LIVE:  # finished: back to the queue, with a new runner
                save(job | {"state": "PENDING", "restarts": job["restarts"] + 1, "cancelled": False})
                start_runner(job["id"])
    return 0


def sacct(args: list[str]) -> int:
    options, _ = parse(args, QUERY_SHORT, QUERY_FLAGS, anywhere=True)
    names = [name for name in options.get("jobs", "").split(",") if name]
    fields = options.get("format", FIELDS).split(",")
    chosen = [job for name in names for job in select(name)] if names else jobs()
    rows = [[str(sacct_field(job, field)) for field in fields] for job in chosen]
    if "noheader" not in options:
        rows.insert(0, fields)
    parsable = "parsable" in options or "parsable2" in options
    for row in rows:
        print("|".join(row) if parsable else "  ".join(cell.ljust(12) for cell in row))
    return 0


def sacct_field(job: dict[str, Any], field: str) -> Any:
    return {
        "jobid": job["id"],
        "jobidraw": job["job_id"],
        "jobname": job["name"],
        "state": job["state"],
        "exitcode": job["exit_code"],
        "nodelist": ",".join(node_names(job)) if job["state"] != "PENDING" else "None assigned",
        "restarts": job["restarts"],
        "submit": stamp(job["submit"]),
        "start": stamp(job.get("start")),
        "end": stamp(job.get("end")),
    }.get(field.lower(), "")


def stamp(when: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when)) if when else "Unknown"


def squeue(args: list[str]) -> int:
    options, _ = parse(args, QUERY_SHORT, QUERY_FLAGS, anywhere=True)
    names = [name for name in options.get("jobs", "").split(",") if name]
    states = {state.upper() for state in options.get("states", "").split(",") if state}
    chosen = [job for name in names for job in select(name)] if names else jobs()
    pattern = options.get("format", FORMAT)
    if "noheader" not in options:
        print(re.sub(r"%\.?\d*(\w)", lambda match: COLUMNS.get(match.group(1), ("?",))[0], pattern))
    for job in chosen:
        if job["state"] in (states or LIVE):
            print(re.sub(r"%\.?\d*(\w)", lambda match, job=job: squeue_field(job, match.group(1)), pattern))
    return 0


def squeue_field(job: dict[str, Any], letter: str) -> str:
    if letter == "t":
        return STATE_CODES.get(job["state"], job["state"][:2])
    if letter == "N":
        return ",".join(node_names(job)) if job["state"] == "RUNNING" else ""
    if letter == "r":
        return "None" if job["state"] == "RUNNING" else "Priority"
    value = job.get(COLUMNS.get(letter, ("", ""))[1] or "")
    return "" if value is None else str(value)


def srun(args: list[str]) -> int:
    """Start a job step: its tasks as local processes, and wait for them (see the module docstring)."""
    if "SLURM_JOB_ID" not in os.environ:
        print("srun: error: this fake runs job steps inside an sbatch job only", file=sys.stderr)
        return 1
    options, command = parse(args, JOB_SHORT, JOB_FLAGS)
    (job,) = [job for job in select(os.environ["SLURM_JOB_ID"]) if job["job_id"] == os.environ["SLURM_JOB_ID"]]
    nodes = int(options.get("nodes", job["nodes"]))
    per_node = int(options.get("ntasks-per-node", 0)) or max(
        1, int(options.get("ntasks", nodes * job["tasks_per_node"])) // nodes
    )
    tasks = [start_task(job, command, options, rank, nodes, per_node) for rank in range(nodes * per_node)]
    with locked():
        job = load(job["id"])
        save(job | {"groups": job["groups"] | {"steps": [task.pid for task in tasks]}})
    for number in (signal.SIGTERM, signal.SIGINT):  # srun passes these on to its tasks
        signal.signal(number, lambda received, frame: [signal_group(task.pid, received) for task in tasks])
    failure = 0
    while any(task.poll() is None for task in tasks):
        failed = [task.returncode for task in tasks if task.returncode not in (None, 0)]
        if failed and not failure:  # as --kill-on-bad-exit=1: a failed task ends the step
            failure = failed[0]
            for task in tasks:
                signal_group(task.pid, signal.SIGTERM)
        time.sleep(0.1)
    return failure or next((task.returncode for task in tasks if task.returncode != 0), 0)


def start_task(
    job: dict[str, Any], command: list[str], options: dict[str, str], rank: int, nodes: int, per_node: int
) -> subprocess.Popen:
    """One task of a step, in its own process group, killed if srun dies."""
    node = rank // per_node
    environment = os.environ | {
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank % per_node),
        "SLURM_NODEID": str(node),
        "SLURMD_NODENAME": node_names(job)[node],
        "SLURM_NTASKS": str(nodes * per_node),
        "SLURM_NPROCS": str(nodes * per_node),
        "SLURM_NTASKS_PER_NODE": str(per_node),
        "SLURM_NNODES": str(nodes),
        "SLURM_STEP_NUM_TASKS": str(nodes * per_node),
        "SLURM_STEP_ID": "0",
        "SLURM_STEPID": "0",
    }
    paths = {name: expand(options[name], job, t=rank, n=rank % per_node, s=0) for name in options}
    with ExitStack() as files:
        streams = {name: files.enter_context(open(paths[name], "a")) for name in ("output", "error") if name in paths}
        return subprocess.Popen(
            command,
            env=environment,
            stdout=streams.get("output"),
            stderr=streams.get("error", streams.get("output")),
            start_new_session=True,
            preexec_fn=lambda: ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL),
        )


COMMANDS = {"sbatch": sbatch, "squeue": squeue, "sacct": sacct, "scancel": scancel, "scontrol": scontrol}
COMMANDS |= {"srun": srun, "_run": lambda args: run(args[0])}

if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    if command != "_run":
        log_call(command, arguments)
    sys.exit(COMMANDS[command](arguments))
