"""Sweep specifications: a YAML grid over methods × budgets × tasks × seeds, checked before anything runs.

A spec (see profiles/*.yaml) has these top-level keys:

- `name`: the sweep's name (W&B group, report title);
- `model` (a name from `bench list`) and `tasks`, or `models`: a mapping model -> {tasks, training} for sweeps over
  several models (each with its own tasks and training overrides); `tasks` is a list, or a mapping task -> training
  overrides of that task (`{glue/sst2: {max_steps: 500}, glue/stsb: {max_steps: 300}}`), whose `tuning` key holds
  overrides for the task's learning-rate tuning runs only (`{max_steps: 2000, tuning: {max_steps: 1000}}`: tune on a
  shorter schedule, train the final runs on the longer one);
- `seeds`: a list; `budgets`: the default budget grid (`0.1%`, `120k`, ...) of every method with a knob range;
- `training`: any RunConfig field except method/task/model/budget/seed/options/recipe (max_steps, batch_size,
  devices, ...);
- `recipe` (optional): the hyperparameter recipe of every method, `default` (the project's) or `paper` (each method's
  published settings, see methods/recipes.py); a method's own `recipe:` wins, and its `lr`, `options` and `training`
  values win over the recipe's;
- `methods`: a list of names, or a mapping name -> {budgets, options, training, recipe, lr | lrs, seeds_at}; `lr` is one
  learning rate, or a mapping budget -> learning rate covering the method's budgets; `budgets: native` runs a
  method once per task and seed at its own fixed count (a method whose knob is pinned, such as SVFit's energy rule);
  `seeds` replaces the spec's seeds for the method (`[0]` for a deterministic row such as zero-shot); `seeds_at` maps
  some of its budgets to the seeds their final runs use instead (more seeds where a comparison is read, e.g.
  `{1M: [0, 1, 2, 3, 4]}`); each list holds the tuning seeds. A method that trains nothing (zero-shot) needs no
  learning-rate grid beside tuned methods;
- `tuning` (optional): `lrs` (the default learning-rate grid), `seed` (default: the first seed) or `seeds` (a list:
  every rate runs at each, and the pick has the highest mean validation score, so a rate that collapses at one seed is
  not chosen); every tuned method gets a grid of the same size, so every method has the same tuning budget;
  `budgets` (optional, at least 3): tune each method at that many of its budgets, spread evenly over its sorted budget
  list with both ends included, and interpolate the chosen learning rate in log-lr against log-budget for the others
  (default: tune at every budget);
  `extend` (optional, default 0): a pick at an end of its grid (three or more rates) gets one more rate one step
  beyond that end (the ratio between the end and its neighbour), and the choice is made again, up to `extend` times
  per tuned group, so a curve's cell is not held back by where the grid stops;
- `full_data` (optional, default false): the spec needs full training sets, so it is refused on the committed subsets
  (`tasks/data`); point `PEFT_BENCH_DATA` (or `training.data_dir`) at a full data folder;
- `checkpoint_every` (optional): every run also writes a checkpoint every this many steps (besides every 30 minutes
  and on a stop signal; bench.run.checkpoints). It changes no result, so it is not part of any run key;
- `wandb` (optional): project, entity, enabled, mode (offline, the default, online or disabled); `slurm` (optional):
  submitit parameters, `cluster` (`slurm` or `local`).

Methods without a knob range (full fine-tuning) run once per task and seed whatever the budgets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.report.wandb_logging import DEFAULT_PROJECT
from bench.run.budget import FIXED_KNOBS, parse_budget
from bench.run.config import RunConfig
from bench.run.models import check_model_name
from bench.run.settings import MAX_SEED
from core.errors import BenchError
from methods import get_method
from tasks import get_task

CELL_FIELDS = ("method", "task", "model", "budget", "seed", "options", "lr", "recipe")
TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in CELL_FIELDS)
TOP_KEYS = {
    "name",
    "description",
    "model",
    "models",
    "tasks",
    "seeds",
    "budgets",
    "training",
    "recipe",
    "methods",
    "tuning",
    "full_data",
    "checkpoint_every",
    "wandb",
    "slurm",
}
METHOD_KEYS = {"budgets", "options", "training", "recipe", "lrs", "lr", "seeds", "seeds_at"}
MODEL_KEYS = {"tasks", "training"}
TUNING_KEYS = {"lrs", "seed", "seeds", "budgets", "extend"}
MIN_TUNING_BUDGETS = 3  # interpolation needs the two ends and a point between
WANDB_KEYS = {"project", "entity", "enabled", "mode"}
WANDB_MODES = (
    "offline",
    "online",
    "disabled",
)  # `mode`: W&B stays offline unless the spec or WANDB_MODE says otherwise
DEFAULT_RECIPE = "default"  # methods.recipes.DEFAULT, not imported here: that module loads torch
NATIVE = "native"  # `budgets: native`: run without a budget, at the method's own fixed count (e.g. SVFit's energy rule)


@dataclass(frozen=True)
class MethodSpec:
    """One method of the sweep: its budget grid (None: the method has no knob range), options, overrides, lr grid."""

    name: str
    budgets: tuple[str, ...] | None
    options: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None
    lrs: tuple[float, ...] = ()
    recipe: str = DEFAULT_RECIPE
    lr_by_budget: dict[str, float] = field(default_factory=dict)
    seeds_at: dict[str, tuple[int, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None  # None: the spec's seeds

    def lr_at(self, budget: str | None) -> float | None:
        """The fixed learning rate of `budget` (None: the recipe's; a tuned method's comes from its grid)."""
        return self.lr_by_budget.get(budget, self.lr) if budget is not None else self.lr


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep specification."""

    name: str
    pairs: tuple[tuple[str, str], ...]  # (model, task)
    seeds: tuple[int, ...]
    methods: tuple[MethodSpec, ...]
    training: dict[str, Any]
    model_training: dict[str, dict[str, Any]]
    task_training: dict[tuple[str, str], dict[str, Any]]  # (model, task) -> overrides
    tuning_seeds: tuple[int, ...]  # empty when no method is tuned
    tuning_budgets: int | None  # tune at this many budgets per method and interpolate; None: at every budget
    tuning_extend: int  # at most this many rates beyond a grid's end, per tuned group whose pick is that end
    full_data: bool  # refuse the committed data subsets
    checkpoint_every: int | None  # every run also checkpoints every this many steps (bench.run.checkpoints)
    wandb: dict[str, Any]
    slurm: dict[str, Any]
    source: dict[str, Any]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.source, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def final_seeds(self, method: str, budget: str | None) -> tuple[int, ...]:
        """The seeds of a budget's final runs: the method's `seeds_at` for it, else `seeds`."""
        spec = next(m for m in self.methods if m.name == method)
        seeds = spec.seeds or self.seeds
        return spec.seeds_at.get(budget, seeds) if budget is not None else seeds

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(model for model, _ in self.pairs))

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(task for _, task in self.pairs))

    def run_config(
        self,
        method: MethodSpec,
        model: str,
        task: str,
        budget: str | None,
        seed: int,
        lr: float | None,
        tuning: bool = False,
    ) -> RunConfig:
        """Training settings: the spec's, then the model's, the task's and the method's (later ones win); a tuning
        run then takes the task's tuning overrides."""
        task_settings = dict(self.task_training.get((model, task), {}))
        tuning_settings = task_settings.pop("tuning", {})
        training = {
            **self.training,
            **self.model_training.get(model, {}),
            **task_settings,
            **method.training,
            **(tuning_settings if tuning else {}),
        }
        return RunConfig(
            method=method.name,
            task=task,
            model=model,
            budget=budget,
            seed=seed,
            lr=lr,
            options=dict(method.options),
            recipe=method.recipe,
            **training,
        )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a YAML spec; BenchError naming the problem and the fix."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"sweep spec {path} does not exist", "pass a YAML file such as profiles/default.yaml")
    try:
        data = yaml.load(path.read_bytes().decode("utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as error:
        raise BenchError(
            f"sweep spec {path} is not UTF-8 text ({error.reason} at byte {error.start})", "save the spec as UTF-8"
        ) from None
    except yaml.YAMLError as error:
        raise BenchError(
            f"sweep spec {path} is not valid YAML ({' '.join(str(error).split())})", "fix the YAML syntax"
        ) from None
    return parse_spec(data, where=str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=True) for key, _ in node.value]
        repeated = sorted({str(key) for key in keys if keys.count(key) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"key(s) {repeated} repeated in one mapping", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def parse_spec(data: Any, where: str = "spec") -> SweepSpec:
    """Check a spec given as a mapping (see the module docstring)."""
    _check_top_level(data, where)
    pairs, model_training, task_training = _models(data, where)
    _check_names(pairs)
    seeds = _seeds(data["seeds"], where)
    default_budgets = tuple(_budgets(data.get("budgets", []), f"{where}: budgets"))
    training = _training(data.get("training", {}), f"{where}: training")
    tuning = _section(data, "tuning", where, TUNING_KEYS)
    default_lrs = tuple(_floats(tuning.get("lrs", []), f"{where}: tuning.lrs"))
    methods = _methods(data["methods"], default_budgets, default_lrs, data.get("recipe", DEFAULT_RECIPE), where)
    tuning_seeds, tuning_budgets, tuning_extend = _tuning(tuning, methods, seeds, where)
    _check_seeds_at(methods, tuning_seeds, where)
    wandb = _wandb(data, where)
    slurm = _section(data, "slurm", where)
    spec = SweepSpec(
        name=str(data.get("name", Path(where).stem)),
        pairs=pairs,
        seeds=seeds,
        methods=methods,
        training=training,
        model_training=model_training,
        task_training=task_training,
        tuning_seeds=tuning_seeds,
        tuning_budgets=tuning_budgets,
        tuning_extend=tuning_extend,
        full_data=_flag(data.get("full_data", False), f"{where}: full_data"),
        checkpoint_every=_checkpoint_every(data.get("checkpoint_every"), where),
        wandb=wandb,
        slurm=dict(slurm),
        source=data,
    )
    _check_cells(spec, where)
    return spec


def _check_top_level(data: Any, where: str) -> None:
    """The spec is a mapping of known top-level keys with the required ones."""
    _mapping(data, where)
    _known(data, TOP_KEYS, where)
    for required in ("seeds", "methods"):
        if required not in data:
            raise BenchError(f"{where} has no {required!r}", f"add `{required}:` (see profiles/default.yaml)")


def _check_names(pairs: tuple[tuple[str, str], ...]) -> None:
    """Every model and task of the (model, task) pairs exists."""
    for model in dict.fromkeys(model for model, _ in pairs):
        check_model_name(model)
    for task in dict.fromkeys(task for _, task in pairs):
        get_task(task)


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    """The `seeds` list: distinct whole numbers in 0..MAX_SEED."""
    seeds = tuple(_ints(value, f"{where}: seeds"))
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"{where}: seeds {list(seeds)} repeat a value", "list each seed once")
    if not all(0 <= seed <= MAX_SEED for seed in seeds):
        raise BenchError(f"{where}: seeds {list(seeds)} must lie in 0..{MAX_SEED}", "write seeds as [0, 1, 2]")
    return seeds


def _section(data: dict[str, Any], key: str, where: str, allowed: set[str] | None = None) -> dict[str, Any]:
    """The optional mapping `key` of the spec ({} when absent or empty), holding only `allowed` keys if given."""
    section = data.get(key) or {}
    _mapping(section, f"{where}: {key}")
    if allowed is not None:
        _known(section, allowed, f"{where}: {key}")
    return section


def _methods(
    value: Any, default_budgets: tuple[str, ...], default_lrs: tuple[float, ...], recipe: Any, where: str
) -> tuple[MethodSpec, ...]:
    """The `methods` section, a list of names or a mapping name -> settings; the grids must give every method the
    same tuning budget."""
    if isinstance(value, list):
        value = {name: {} for name in _unique(_strings(value, f"{where}: methods"), f"{where}: methods")}
    _mapping(value, f"{where}: methods")
    if not value:
        raise BenchError(f"{where}: methods is empty", "list at least one method (see `bench list`)")
    methods = tuple(
        _method(name, settings, default_budgets, default_lrs, recipe, where) for name, settings in value.items()
    )
    _check_grids(methods, where)
    return methods


def _method(
    name: Any, settings: Any, default_budgets: tuple[str, ...], default_lrs: tuple[float, ...], recipe: Any, where: str
) -> MethodSpec:
    """One method's settings: options, budgets, fixed or tuned learning rates, recipe and training overrides."""
    from methods.recipes import check_recipe  # imports torch: loaded when a spec is checked, not with this module

    settings = settings or {}
    what = f"{where}: methods.{name}"
    _mapping(settings, what)
    _known(settings, METHOD_KEYS, what)
    method_cls = get_method(str(name))
    options = {str(k): str(v) for k, v in (settings.get("options") or {}).items()}
    method_cls.parse_options(options)
    budgets, has_knob = _method_budgets(method_cls, name, settings, default_budgets, what)
    lrs = tuple(_floats(settings["lrs"], f"{what}.lrs")) if "lrs" in settings else default_lrs
    if lrs and "lr" in settings:
        raise BenchError(
            f"{what} sets both lr and a tuning grid", "keep `lr` (fixed) or `lrs`/`tuning.lrs` (tuned), not both"
        )
    lr, lr_by_budget = _fixed_lrs(settings.get("lr"), budgets if has_knob else (), f"{what}.lr")
    recipe = str(settings.get("recipe", recipe))
    check_recipe(method_cls, recipe)
    return MethodSpec(
        str(name),
        budgets if has_knob else None,
        options,
        _training(settings.get("training", {}), f"{what}.training"),
        lr,
        lrs,
        recipe,
        lr_by_budget,
        _seeds_at(settings.get("seeds_at", {}), budgets if has_knob else (), what),
        _seeds(settings["seeds"], f"{what}.seeds") if "seeds" in settings else None,
    )


def _seeds_at(value: Any, budgets: tuple[str, ...], what: str) -> dict[str, tuple[int, ...]]:
    """A method's `seeds_at`: budgets of the method -> their seeds."""
    _mapping(value, f"{what}.seeds_at")
    unknown = sorted(str(budget) for budget in value if str(budget) not in budgets)
    if unknown:
        raise BenchError(
            f"{what}.seeds_at names budgets {unknown} the method does not run (its budgets: {list(budgets)})",
            "key seeds_at by the method's budgets, spelled as in its budget list",
        )
    return {str(budget): _seeds(seeds, f"{what}.seeds_at.{budget}") for budget, seeds in value.items()}


def _method_budgets(
    method_cls: type, name: Any, settings: dict[str, Any], default_budgets: tuple[str, ...], what: str
) -> tuple[tuple[str, ...], bool]:
    """A method's budgets (its own, else the default grid; none for `budgets: native`) and whether it has a knob range
    to spread them over."""
    native = settings.get("budgets") == NATIVE
    has_knob = _has_knob_range(method_cls) and not native
    if native:
        budgets: tuple[str, ...] = ()
    else:
        budgets = tuple(_budgets(settings["budgets"], f"{what}.budgets")) if "budgets" in settings else default_budgets
    if has_knob and not budgets:
        raise BenchError(
            f"{what} has a knob ({method_cls.knob_name}) but no budgets",
            "add `budgets:` at the top level or under the method, e.g. ['0.1%', '1%']",
        )
    if not _has_knob_range(method_cls) and "budgets" in settings:
        raise BenchError(
            f"{what}: method {name} has no knob range, so budgets do not apply",
            f"remove budgets from {name} (it runs once per task and seed)",
        )
    return budgets, has_knob


def _check_grids(methods: tuple[MethodSpec, ...], where: str) -> None:
    """Either no method tunes its learning rate, or every one does over a grid of the same size."""
    grid_sizes = {len(m.lrs) for m in methods if m.lrs}
    untuned = [m.name for m in methods if not m.lrs and get_method(m.name).trains]
    if grid_sizes and untuned:
        raise BenchError(
            f"{where}: {', '.join(untuned)} would run untuned while other methods get a learning-rate grid",
            "give every method a grid (`tuning.lrs`, or `lrs` per method) so each gets the same tuning budget",
        )
    if len(grid_sizes) > 1:
        sizes = ", ".join(f"{m.name}: {len(m.lrs)}" for m in methods if m.lrs)
        raise BenchError(
            f"{where}: learning-rate grids differ in size ({sizes})",
            "give every tuned method a grid of the same size, so each gets the same tuning budget",
        )


def _tuning(
    tuning: dict[str, Any], methods: tuple[MethodSpec, ...], seeds: tuple[int, ...], where: str
) -> tuple[tuple[int, ...], int | None, int]:
    """(tuning seeds, how many budgets to tune at, how far a grid may extend) from the `tuning` section."""
    tuning_seeds: tuple[int, ...] = ()
    if any(method.lrs for method in methods):
        tuning_seeds = _tuning_seeds(tuning, seeds, where)
    elif set(tuning) - {"lrs"}:
        raise BenchError(
            f"{where}: tuning.{sorted(set(tuning) - {'lrs'})[0]} is set but no method has a learning-rate grid",
            "add `tuning.lrs` or per-method `lrs`",
        )
    tuning_extend = tuning.get("extend", 0)
    if isinstance(tuning_extend, bool) or not isinstance(tuning_extend, int) or tuning_extend < 0:
        raise BenchError(
            f"{where}: tuning.extend is {tuning_extend!r}",
            "give how many rates a grid may grow beyond its end as a whole number (0 keeps every grid as written)",
        )
    tuning_budgets = tuning.get("budgets")
    if tuning_budgets is not None and (
        isinstance(tuning_budgets, bool) or not isinstance(tuning_budgets, int) or tuning_budgets < MIN_TUNING_BUDGETS
    ):
        raise BenchError(
            f"{where}: tuning.budgets is {tuning_budgets!r}",
            f"give a whole number of budgets of at least {MIN_TUNING_BUDGETS} (the two ends and one between), "
            "or omit it to tune at every budget",
        )
    return tuning_seeds, tuning_budgets, tuning_extend


def _check_seeds_at(methods: tuple[MethodSpec, ...], tuning_seeds: tuple[int, ...], where: str) -> None:
    """A tuned method's own seeds and its budgets' include the tuning seeds: the pick's tuning run is a final run."""
    for method in methods:
        lists = {f"seeds_at.{budget}": seeds for budget, seeds in method.seeds_at.items()}
        if method.seeds and method.lrs:
            lists["seeds"] = method.seeds
        for name, seeds in lists.items():
            missing = sorted(set(tuning_seeds) - set(seeds))
            if missing:
                raise BenchError(
                    f"{where}: methods.{method.name}.{name} leaves out tuning seed(s) {missing}",
                    f"list them too, e.g. {sorted({*seeds, *tuning_seeds})}",
                )


def _wandb(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The W&B settings: the spec's `wandb` section over the defaults."""
    wandb = _section(data, "wandb", where, WANDB_KEYS)
    if wandb.get("mode", "offline") not in WANDB_MODES:
        raise BenchError(f"{where}: wandb.mode is {wandb['mode']!r}", f"use one of {', '.join(WANDB_MODES)}")
    return {"project": DEFAULT_PROJECT, "entity": None, "enabled": True, **wandb}


def _check_cells(spec: SweepSpec, where: str) -> None:
    """Every method makes a valid RunConfig on every (model, task), and tasks' tuning overrides have a tuned method."""
    for method in spec.methods:
        for model, task in spec.pairs:
            budget = (method.budgets or (None,))[0]
            spec.run_config(method, model, task, budget, spec.seeds[0], method.lr_at(budget), tuning=bool(method.lrs))
    overridden = sorted(task for (_, task), settings in spec.task_training.items() if "tuning" in settings)
    if overridden and not any(method.lrs for method in spec.methods):
        raise BenchError(
            f"{where}: tasks {', '.join(overridden)} set `tuning` overrides, but no method tunes its learning rate",
            "give methods a grid (`lrs:` or `tuning: {lrs: ...}`), or drop the tasks' `tuning` keys",
        )


def _tasks(value: Any, what: str) -> dict[str, dict[str, Any]]:
    """Task names and their training overrides, from a list of names or a mapping name -> overrides; the overrides of
    the task's tuning runs, if any, under "tuning"."""
    if isinstance(value, dict):
        return {str(task): _task_settings(settings, f"{what}.{task}") for task, settings in value.items()}
    return {task: {} for task in _unique(_strings(value, what), what)}


def _task_settings(value: Any, what: str) -> dict[str, Any]:
    settings = dict(value or {})
    _mapping(settings, what)
    tuning = settings.pop("tuning", None)
    return _training(settings, what) | ({} if tuning is None else {"tuning": _training(tuning, f"{what}.tuning")})


def _models(
    data: dict[str, Any], where: str
) -> tuple[tuple[tuple[str, str], ...], dict[str, dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    """(model, task) pairs, per-model and per-task training overrides, from `model` + `tasks` or from `models`."""
    if ("models" in data) == ("model" in data):
        raise BenchError(
            f"{where} needs exactly one of `model` (with `tasks`) or `models`",
            "write `model: minilm-l6` and `tasks: [...]`, or `models: {minilm-l6: {tasks: [...]}}`",
        )
    if "model" in data:
        if "tasks" not in data:
            raise BenchError(f"{where} has no 'tasks'", "add `tasks:` (see profiles/default.yaml)")
        tasks = _tasks(data["tasks"], f"{where}: tasks")
        model = str(data["model"])
        return tuple((model, task) for task in tasks), {}, {(model, task): tasks[task] for task in tasks}
    if "tasks" in data:
        raise BenchError(
            f"{where} sets top-level tasks next to `models`",
            "list tasks under each model: `models: {name: {tasks: [...]}}`",
        )
    _mapping(data["models"], f"{where}: models")
    pairs, training, task_training = [], {}, {}
    for model, settings in data["models"].items():
        what = f"{where}: models.{model}"
        _mapping(settings, what)
        _known(settings, MODEL_KEYS, what)
        if "tasks" not in settings:
            raise BenchError(f"{what} has no tasks", f"add `tasks: [...]` under {model}")
        tasks = _tasks(settings["tasks"], f"{what}.tasks")
        pairs += [(str(model), task) for task in tasks]
        task_training |= {(str(model), task): overrides for task, overrides in tasks.items()}
        training[str(model)] = _training(settings.get("training", {}), f"{what}.training")
    return tuple(pairs), training, task_training


def _has_knob_range(method_cls: type) -> bool:
    """Whether a method has a budget knob: full fine-tuning (`knob_name = "all"`) and zero-shot ("none") have a single
    value."""
    return method_cls.knob_name not in FIXED_KNOBS


def _tuning_seeds(tuning: dict[str, Any], seeds: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The tuning seeds: `tuning.seeds`, or `tuning.seed` alone, or the first seed; each one of `seeds`."""
    if "seed" in tuning and "seeds" in tuning:
        raise BenchError(f"{where}: tuning sets both seed and seeds", "keep one: `seed: 0` or `seeds: [0, 1]`")
    chosen = tuning.get("seeds", [tuning.get("seed", seeds[0])])
    if not isinstance(chosen, list) or not chosen or len(set(map(str, chosen))) != len(chosen):
        raise BenchError(f"{where}: tuning.seeds is {chosen!r}", "give a list of distinct seeds, e.g. `seeds: [0, 1]`")
    for seed in chosen:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed not in seeds:
            raise BenchError(
                f"{where}: tuning seed {seed} is not one of the seeds {list(seeds)}", "pick tuning seeds from `seeds`"
            )
    return tuple(chosen)


def _checkpoint_every(value: Any, where: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise BenchError(
            f"{where}: checkpoint_every is {value!r}", "give a whole number of steps of at least 1, or leave it out"
        )
    return value


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise BenchError(f"{what} must be true or false, got {value!r}", "write `full_data: true` or leave it out")
    return value


def _mapping(value: Any, what: str) -> None:
    if not isinstance(value, dict):
        raise BenchError(f"{what} must be a mapping, got {type(value).__name__}", "write it as `key: value` lines")


def _known(values: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(map(str, values)) - allowed)
    if unknown:
        raise BenchError(f"{what} has unknown key(s) {unknown}", f"use only: {', '.join(sorted(allowed))}")


def _unique(items: list[Any], what: str) -> list[Any]:
    repeated = sorted({str(item) for item in items if items.count(item) > 1})
    if repeated:
        raise BenchError(f"{what} repeats {', '.join(repeated)}", "list each entry once")
    return items


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise BenchError(f"{what} must be a non-empty list, got {value!r}", "write it as [a, b, ...]")
    return value


def _strings(value: Any, what: str) -> list[str]:
    return [str(item) for item in _list(value, what)]


def _ints(value: Any, what: str) -> list[int]:
    items = _list(value, what)
    if not all(isinstance(item, int) and not isinstance(item, bool) for item in items):
        raise BenchError(f"{what} must be integers, got {items!r}", "write seeds as [0, 1, 2]")
    return items


def _fixed_lrs(value: Any, budgets: tuple[str, ...], what: str) -> tuple[float | None, dict[str, float]]:
    """(one lr, {}) or (None, budget -> lr) from a method's `lr:` setting; a mapping must cover exactly `budgets`."""
    if value is None:
        return None, {}
    if not isinstance(value, dict):
        return _floats([value], what)[0], {}
    given = {str(budget): _floats([lr], f"{what}.{budget}")[0] for budget, lr in value.items()}
    if set(given) != set(budgets):
        raise BenchError(
            f"{what} gives learning rates for budgets {sorted(given)}, but the method's budgets are {list(budgets)}",
            "give one learning rate per budget of the method (same spelling), or a single `lr`",
        )
    return None, given


def _floats(value: Any, what: str) -> list[float]:
    items = _list(value, what) if value != [] else []
    try:
        numbers = [float(item) for item in items if not isinstance(item, bool)]
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != len(items):
        raise BenchError(f"{what} must be numbers, got {items!r}", "write learning rates as [1e-4, 3e-4]")
    if not all(math.isfinite(number) and number > 0 for number in numbers):
        raise BenchError(
            f"{what} must be finite and positive, got {items!r}", "use learning rates above zero, such as 3e-4"
        )
    return _unique(numbers, what)


def _budgets(value: Any, what: str) -> list[str]:
    if value == []:
        return []
    budgets = _strings(value, what)
    for budget in budgets:
        parse_budget(budget)
    if len(set(budgets)) != len(budgets):
        raise BenchError(f"{what} {budgets} repeats a budget", "list each budget once")
    return budgets


def _training(value: Any, what: str) -> dict[str, Any]:
    value = value or {}
    _mapping(value, what)
    _known(value, set(TRAINING_FIELDS), what)
    hints = typing.get_type_hints(RunConfig)
    value = {
        name: str(item) if hints[name] is str and isinstance(item, int) and not isinstance(item, bool) else item
        for name, item in value.items()
    }  # devices: 8
    for name, item in value.items():
        allowed = tuple(arg for arg in typing.get_args(hints[name]) or (hints[name],) if isinstance(arg, type))
        if allowed == (float,) or float in allowed:
            allowed = (*allowed, int)
        if isinstance(item, bool) != (allowed == (bool,)) or not isinstance(item, allowed):
            raise BenchError(
                f"{what}.{name} must be {' or '.join(a.__name__ for a in allowed)}, got {item!r}",
                f"see `bench run --help` for {name}",
            )
    return dict(value)
