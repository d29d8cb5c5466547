"""The `bench` command line: `run`, `list`, `sweep`, `status`, `report`, `compare`, `eval`, `export`.

Every user error is one line on stderr, `bench: error: <problem>. Fix: <fix>`, with exit status 2, and every
setting is checked before any model loads. Commands import torch and Lightning only when they run, so `--help`,
`--version` and `bench list` answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.records.environment import git_state
from bench.run.config import RunConfig
from bench.run.settings import CHOICES
from core.errors import BenchError
from core.files import write_text_atomic

# Lazy imports: a command, the listing, --version and --plugins import what they run in their body, so help is instant.

Subcommands = argparse._SubParsersAction  # what add_subparsers returns: one add_parser per command
CHOICE_HELP = {"method": "methods", "task": "tasks", "model": "models"}
PREEMPTED_EXIT = 75  # sysexits' EX_TEMPFAIL: stopped by a signal with a checkpoint saved; the same command resumes


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field (`max_steps` -> `--max-steps`), typed from the dataclass."""
    hints = typing.get_type_hints(RunConfig)
    for config_field in dataclasses.fields(RunConfig):
        flag = "--" + config_field.name.replace("_", "-")
        if config_field.name == "options":
            parser.add_argument(
                "--option",
                dest="options",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="a method option, repeatable (options and defaults below)",
            )
            continue
        hint = hints[config_field.name]
        base = next((arg for arg in typing.get_args(hint) if arg is not type(None)), hint)
        required = config_field.name in ("method", "task", "model")
        default = None if required else config_field.default
        if required:
            text = f"see the {CHOICE_HELP[config_field.name]} below"
        elif config_field.name in CHOICES:
            text = f"one of {', '.join(CHOICES[config_field.name])} (default: {default})"
        else:
            text = f"default: {default}"
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=text)
            continue
        parser.add_argument(flag, type=base, default=default, required=required, help=text)


def _choices_text() -> str:
    """The methods (knob, options), tasks and models a run may name: the epilog of `bench run --help` and
    `bench list`."""
    from bench.run.models import MODELS
    from methods import catalogue
    from tasks import registry as task_registry

    lines = ["methods:"]
    for name, method in catalogue().items():
        lines.append(f"  {name:<10} knob: {method.knob_name:<9} {method.summary}")
        if method.options:
            lines.append(
                f"  {'':<10} options: {', '.join(f'{option}={default}' for option, default in method.options)}"
            )
    lines.append("tasks:")
    tasks = task_registry()
    width = max(len(name) for name in tasks)
    lines += [f"  {name:<{width}} {task.model_kind:<24} metric: {task.primary_metric}" for name, task in tasks.items()]
    lines.append("models (or a local model folder, or a hub id org/name):")
    lines += [f"  {name:<16} {spec.description}" for name, spec in MODELS.items()]
    return "\n".join(lines)


def _run_config(args: argparse.Namespace) -> RunConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    options = {}
    for pair in args.options:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"method option {pair!r} is not KEY=VALUE", "write options as --option rank=8")
        options[key.strip()] = value.strip()
    values["options"] = options
    return RunConfig(**values)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.report import wandb_logging
    from bench.run.checkpoints import Preempted
    from bench.run.plan import plan
    from bench.sweep.logged import execute_logged

    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise BenchError(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}", "pass e.g. 100")
    run = plan(_run_config(args))
    target = wandb_logging.RunLogging({"project": wandb_logging.DEFAULT_PROJECT}, "bench-run") if args.wandb else None
    try:
        record = execute_logged(
            run, Path(args.out), target, progress=not args.quiet, checkpoint_every=args.checkpoint_every
        )
    except Preempted as stopped:
        print(f"bench: stopped: {stopped}", file=sys.stderr)
        return PREEMPTED_EXIT
    if record is None:  # a non-zero rank of a distributed run: rank 0 records and reports
        return 0
    if record["status"] != "ok":  # diverged: the failed record names the step and the quantity
        print(
            f"{record['config']['method']} on {record['config']['task']} failed: {record['error']} "
            f"-> {Path(args.out) / (run.key + '.json')}"
        )
        return 1
    params = record["params"]
    print(
        f"{record['method']['name']} {record['method']['knob']['name']}={record['method']['knob']['value']} "
        f"trainable {params['achieved']:,} ({params['achieved_pct']:.3f}%) on {record['task']['name']}: "
        f"{json.dumps(record['metrics']['test'])} -> {Path(args.out) / (record['run_key'] + '.json')}"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print(_choices_text())
    print("machine settings:")
    for name, allowed in CHOICES.items():
        print(f"  {name:<12} {', '.join(allowed)}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors in the same form as every other `bench` error, and an epilog computed only when
    help is shown (`epilog_text`: listing the tasks imports them)."""

    def __init__(self, *args: Any, epilog_text: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epilog_text = epilog_text

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"bench: error: {message}. Fix: see `{self.prog} --help`\n")

    def format_help(self) -> str:
        if self.epilog_text is not None:
            self.epilog = self.epilog_text()
        return super().format_help()


def _join_dash_values(argv: Sequence[str]) -> list[str]:
    """`--budget -1%` -> `--budget=-1%`, `--lr -1e-4` -> `--lr=-1e-4`: a negative value reaches its check (and its
    one-line error) instead of argparse, which reads `-1e-4` as an unknown option."""
    joined: list[str] = list(argv)
    for index in range(len(joined) - 1, 0, -1):
        flag, value = joined[index - 1], joined[index]
        if (
            flag.startswith("--")
            and "=" not in flag
            and value.startswith("-")
            and (flag == "--budget" or _is_number(value))
        ):
            joined[index - 1 : index + 1] = [f"{flag}={value}"]
    return joined


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.sweep.driver import detached_text, run_sweep, summary_text
    from bench.sweep.spec import load_spec
    from bench.sweep.wandb_sweep import write_wandb_sweeps

    if args.detach and args.executor != "slurm":
        raise BenchError("--detach needs --executor slurm", "add --executor slurm (with slurm: {cluster: slurm})")
    if args.detach and args.emit_sbatch:
        raise BenchError(
            "--detach and --emit-sbatch both hand the cells to SLURM",
            "pick one: --detach submits them, --emit-sbatch writes a script to submit with sbatch",
        )
    spec = load_spec(args.spec)
    if args.emit_wandb_sweep:
        for path in write_wandb_sweeps(spec, Path(args.emit_wandb_sweep), Path(args.out)):
            print(f"wrote {path}  (start it with: wandb sweep {path})")
        return 0
    result = run_sweep(
        spec,
        args.out,
        executor=args.executor,
        workers=args.workers,
        progress=not args.quiet,
        isolate=args.isolate,
        detach=args.detach,
        sbatch=Path(args.emit_sbatch) if args.emit_sbatch else None,
    )
    if args.detach or args.emit_sbatch:
        again = "--emit-sbatch " + args.emit_sbatch if args.emit_sbatch else "--executor slurm --detach"
        print(detached_text(result, f"bench sweep {args.spec} --out {args.out} {again}", bool(args.emit_sbatch)))
        return 0
    print(summary_text(result))
    return 0 if result.ok else 1


def cmd_status(args: argparse.Namespace) -> int:
    from bench.records.store import Store
    from bench.sweep.status import status_text

    if not Path(args.store).is_dir():
        raise BenchError(f"store {args.store} does not exist", "pass the --out folder of a bench sweep")
    print(status_text(Store(args.store)))
    return 0


def variant_store(value: str) -> tuple[Path, str | None]:
    """A `--variant` of `bench report`: "NAME=STORE" -> (STORE, NAME); "STORE" -> (STORE, None), named by its sweep."""
    label, named, store = value.partition("=")
    return (Path(store), label) if named and label else (Path(value), None)


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report.write import write_report

    report = write_report(Path(args.dir), log_to_wandb=not args.no_wandb, variants=args.variant)
    print(report.console_text())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.report.compare import Tolerances, compare_stores, log_to_wandb, store_folder, write_baseline

    if args.update:
        print(f"baseline written: {write_baseline(Path(args.new), Path(args.baseline))}")
        return 0
    comparison = compare_stores(
        Path(args.new),
        Path(args.baseline),
        Tolerances(
            k=args.k,
            score_points=args.score_floor,
            memory_ratio=args.memory_floor,
            cpu_memory_ratio=args.cpu_memory_floor,
            time_ratio=args.time_floor,
        ),
    )
    text = comparison.markdown() if args.format == "markdown" else json.dumps(comparison.as_json(), indent=2)
    print(text)
    if not args.no_wandb and store_folder(Path(args.new)):
        log_to_wandb(comparison, Path(args.new))
    if args.output:
        write_text_atomic(Path(args.output), text + "\n")
    return 1 if comparison.regressed else 0


def cmd_track(args: argparse.Namespace) -> int:
    from bench.report.history import track

    print(f"history entry: {track(Path(args.store), Path(args.history))}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from bench.report.history import detect_changes, read_history, trend_figure, trend_markdown

    folder = Path(args.dir)
    entries = read_history(folder)
    changes = detect_changes(entries)
    out = Path(args.out) if args.out else folder / "trend"
    out.mkdir(parents=True, exist_ok=True)
    markdown = trend_markdown(entries, changes)
    write_text_atomic(out / "trend.md", markdown)
    figure = trend_figure(entries, changes, out / "trend.png")
    print(markdown.split("\n## ")[0].rstrip())
    print(f"\nwritten: {out / 'trend.md'}, {figure}")
    if args.wandb:
        from bench.report.history import trend_series
        from bench.report.wandb_logging import log_history

        commits = [entry["commit"][:12] for entry in entries]
        print(f"W&B ({log_history(out, folder.name, trend_series(entries), commits)}): {out / 'wandb'}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from bench.reevaluate import evaluate_saved

    evaluation, path = evaluate_saved(
        Path(args.record), args.task, args.split, Path(args.out) if args.out else None, args.examples, args.data_dir
    )
    print(
        f"{evaluation['method']['name']} run {evaluation['evaluates'][:12]} on {evaluation['task']} "
        f"{evaluation['split']} ({evaluation['examples']} examples): {json.dumps(evaluation['metrics'])} -> {path}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.export import export_merged

    print(f"merged model written: {export_merged(Path(args.record), Path(args.dir))}")
    return 0


class _PrintVersion(argparse.Action):
    """`--version`: print the package version and git commit (read only when asked), then exit."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the package version and git commit, then exit")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from bench.records.environment import version

        print(version())
        parser.exit()


class _UsePlugins(argparse.Action):
    """`--plugins DIR`: add DIR to PEFT_BENCH_PLUGINS at once, so help, listings and sweep workers see its methods."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any, option: Any = None
    ) -> None:
        from core.plugins import ENVIRONMENT

        folder = Path(value).resolve()
        if not folder.is_dir():
            raise BenchError(f"plugin folder {value} does not exist", "pass --plugins a folder of .py files")
        os.environ[ENVIRONMENT] = os.pathsep.join(part for part in (os.environ.get(ENVIRONMENT), str(folder)) if part)


def build_parser() -> argparse.ArgumentParser:
    """The `bench` parser: the global flags, then the subcommands in the order `--help` lists them."""
    parser = _Parser(
        prog="bench",
        description="peft-bench: fair, reproducible comparisons of fine-tuning methods "
        "at equal trainable-parameter budgets.",
    )
    parser.add_argument("--version", action=_PrintVersion)
    parser.add_argument(
        "--plugins",
        action=_UsePlugins,
        metavar="DIR",
        help="a folder of your own methods and tasks (repeatable; also PEFT_BENCH_PLUGINS; see examples/plugins)",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add_command in (
        _add_run,
        _add_list,
        _add_sweep,
        _add_status,
        _add_report,
        _add_compare,
        _add_track,
        _add_history,
        _add_eval,
        _add_export,
    ):
        add_command(commands)
    return parser


def _add_run(commands: Subcommands) -> None:
    run = commands.add_parser(
        "run",
        help="fine-tune and evaluate one method at one budget on one task and seed",
        epilog_text=_choices_text,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_arguments(run)
    run.add_argument("--out", default="runs", help="folder for the result record (default: runs)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="STEPS",
        default=None,
        help="also checkpoint every STEPS optimizer steps (always: every 30 minutes of training and on SIGUSR1,"
        " SIGUSR2 or SIGTERM, after which the run stops; the same command resumes it)",
    )
    run.add_argument(
        "--wandb",
        action="store_true",
        help="also log the run to W&B, live while it trains (offline unless WANDB_MODE=online; files under --out)",
    )
    run.set_defaults(handler=cmd_run)


def _add_list(commands: Subcommands) -> None:
    listing = commands.add_parser("list", help="the methods, tasks and models available")
    listing.set_defaults(handler=cmd_list)


def _add_sweep(commands: Subcommands) -> None:
    sweep = commands.add_parser(
        "sweep", help="run a sweep spec (methods × budgets × tasks × seeds) into a results store, skipping stored runs"
    )
    sweep.add_argument("spec", help="a sweep spec YAML, e.g. profiles/default.yaml")
    sweep.add_argument("--out", default="runs/sweep", help="the results store folder (default: runs/sweep)")
    sweep.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default="local",
        help="local processes, or a SLURM job array via submitit (settings: `slurm:` in the spec)",
    )
    sweep.add_argument("--workers", type=int, default=1, help="local worker processes (default: 1, in this process)")
    sweep.add_argument(
        "--isolate",
        action="store_true",
        help="run every cell in a fresh process (CPU peak memory of that run alone; costs start-up time per run)",
    )
    sweep.add_argument(
        "--detach",
        action="store_true",
        help="with --executor slurm: submit the cells that can run now and return at once; run the same command again"
        " to submit the next phase of a tuned sweep (follow it with `bench status`)",
    )
    sweep.add_argument(
        "--emit-sbatch",
        metavar="FILE",
        help="write the cells that can run now as an sbatch array script to FILE (and FILE.cells.json) and exit",
    )
    sweep.add_argument(
        "--emit-wandb-sweep",
        metavar="DIR",
        help="write an equivalent W&B sweep YAML per method into DIR and exit (for online users)",
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep.set_defaults(handler=cmd_sweep)


def _add_status(commands: Subcommands) -> None:
    status = commands.add_parser(
        "status", help="where each cell of a sweep stands: done, running, pending, requeued, failed (store + sacct)"
    )
    status.add_argument("store", help="a results store folder (the --out of bench sweep)")
    status.set_defaults(handler=cmd_status)


def _add_report(commands: Subcommands) -> None:
    report = commands.add_parser(
        "report", help="tables (Markdown, LaTeX), plateau and Pareto plots of a results store, under DIR/report"
    )
    report.add_argument("dir", help="a results store folder")
    report.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B")
    report.add_argument(
        "--variant",
        metavar="[NAME=]STORE",
        action="append",
        type=variant_store,
        default=[],
        help="another store over the same grid (the papers' fixed recipes, another target arm), drawn in a panel of "
        "its own in the plateau figures and tabulated against this one, named NAME or by its sweep; repeatable",
    )
    report.set_defaults(handler=cmd_report)


def _add_compare(commands: Subcommands) -> None:
    compare = commands.add_parser(
        "compare", help="regression check of a results store against a baseline; exit 1 on a regression"
    )
    compare.add_argument("new", help="a results store folder (or a summary.json)")
    compare.add_argument(
        "baseline", help="a baseline folder holding summary.json (or a summary.json, or a store folder)"
    )
    compare.add_argument("--k", type=float, default=2.0, help="tolerance in seed standard deviations (default: 2)")
    compare.add_argument(
        "--score-floor", type=float, default=1.0, help="smallest score tolerance, in points (default: 1)"
    )
    compare.add_argument(
        "--memory-floor",
        type=float,
        default=0.10,
        help="smallest GPU peak-memory tolerance, as a fraction (default: 0.10)",
    )
    compare.add_argument(
        "--cpu-memory-floor",
        type=float,
        default=0.25,
        help="smallest CPU peak-RSS tolerance, as a fraction (default: 0.25)",
    )
    compare.add_argument(
        "--time-floor",
        type=float,
        default=0.10,
        help="smallest step-time tolerance on GPUs, as a fraction (default: 0.10; CPU step time is not gated)",
    )
    compare.add_argument(
        "--update", action="store_true", help="write NEW's summary as the baseline instead of comparing"
    )
    compare.add_argument(
        "--format", choices=("markdown", "json"), default="markdown", help="how the result prints (default: markdown)"
    )
    compare.add_argument("--output", metavar="FILE", help="also write the result to FILE (e.g. for a pull request)")
    compare.add_argument(
        "--no-wandb", action="store_true", help="do not log the result (and an alert on a regression) to NEW's W&B run"
    )
    compare.set_defaults(handler=cmd_compare)


def _add_track(commands: Subcommands) -> None:
    track = commands.add_parser(
        "track", help="append a commit-stamped entry of a results store to a history folder (never rewritten)"
    )
    track.add_argument("store", help="a results store folder")
    track.add_argument("--history", required=True, help="the history folder (e.g. results/history)")
    track.set_defaults(handler=cmd_track)


def _add_history(commands: Subcommands) -> None:
    history = commands.add_parser(
        "history", help="trend table and figure of a tracked sweep's entries, with the changes they show"
    )
    history.add_argument("dir", help="one tracked sweep's folder (e.g. results/history/default)")
    history.add_argument("--out", help="where trend.md and trend.png go (default: DIR/trend)")
    history.add_argument(
        "--wandb", action="store_true", help="also log the trend as W&B line charts (offline unless WANDB_MODE says)"
    )
    history.set_defaults(handler=cmd_history)


def _add_eval(commands: Subcommands) -> None:
    evaluate = commands.add_parser(
        "eval", help="re-evaluate a saved run on a split of a task (same model kind), without retraining"
    )
    evaluate.add_argument("record", help="a run record, <store>/<run_key>.json, with its saved state next to it")
    evaluate.add_argument("--task", required=True, help="the task to evaluate on, e.g. glue/sst2")
    evaluate.add_argument("--split", choices=("test", "validation"), default="test", help="default: test")
    evaluate.add_argument(
        "--examples",
        type=int,
        default=None,
        help="first N examples (default: the run's limit on its own task, else all)",
    )
    evaluate.add_argument(
        "--out", default=None, help="folder for evals/<run_key>.<task>.<split>.json (default: the record's folder)"
    )
    evaluate.add_argument(
        "--data-dir", default=None, help="the data folder, if the run read one (records name it only as <data-dir>)"
    )
    evaluate.set_defaults(handler=cmd_eval)


def _add_export(commands: Subcommands) -> None:
    export = commands.add_parser(
        "export", help="write a saved run's merged dense model as a transformers folder (save_pretrained + tokenizer)"
    )
    export.add_argument("record", help="a run record, <store>/<run_key>.json, with its saved state next to it")
    export.add_argument("dir", help="a new or empty folder")
    export.set_defaults(handler=cmd_export)


def main(argv: Sequence[str] | None = None) -> int:
    git_state()  # the checkout this process's code comes from, before anything can change it
    parser = build_parser()
    try:
        args = parser.parse_args(_join_dash_values(sys.argv[1:] if argv is None else argv))
        return args.handler(args)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
