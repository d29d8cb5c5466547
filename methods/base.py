"""The one interface every fine-tuning method implements.

`PeftMethod` is a torch module that owns the model, computes the training loss (the task's own loss,
`methods.task_loss`, plus the method's term if any), and builds the optimizer and LR schedule over the trainable
parameters only; `methods.training.Training` is the one LightningModule that trains any of them. Lightning is imported
only to train, so a budget is solved and checked on a weightless model without it. A method subclass fills in a few
hooks:

- `count_for_knob` / `knob_bounds`: the exact trainable count for a knob value (the budget solver searches these);
- `compute_calibration` / `load_calibration`: optional statistics gathered on training batches before training,
  cached on disk by content so a budget sweep computes them once;
- `attach`: inject into the model for a knob and leave exactly the method's parameters trainable;
- `extra_loss`: an optional term added to the task loss;
- `merged_model`: a plain dense model equivalent to the trained one;
- `export_state` / `load_selection`: what is saved after training, and how the selection saved in it (block or row
  indices) stands in for calibration when a saved run is rebuilt.

The lifecycle is `calibrate` (if the method needs it) -> `solve_budget` -> `apply(knob)` -> `Trainer.fit(Training(method))`; a saved
run is rebuilt on a fresh base model by `restore(knob, state)`.
Hyperparameters come from a recipe (`methods.recipes`): the project's defaults or a paper's, chosen by `--recipe`.
The task head (a classifier, if any) is always trainable and counted separately from the method's parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save, save_file
from torch import nn

from core.errors import BenchError
from methods.head_probe import head_module, probed_head
from methods.task_loss import task_loss

if typing.TYPE_CHECKING:
    from methods.recipes import Recipe


SCHEDULES = ("linear", "step")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW over the trainable parameters and its LR schedule over `max_steps`.

    - "linear": transformers' `get_linear_schedule_with_warmup`, the schedule of the LoRA, DoRA, LLM-Adapters, DEFT and
      SMT reference code: from 0 up to `lr` over the warm-up steps, then linearly down to 0 at `max_steps`;
    - "step": `lr` multiplied by `step_gamma` after each of `step_periods` equal parts of the run, no warm-up (the
      row-SFT reference's `StepLR(gamma=0.85)` once per epoch over 3 epochs).

    Warm-up: `warmup_steps` if set (recipes quoting a step count), else `warmup_ratio · max_steps`.
    Gradients are clipped to a global norm of `max_grad_norm` before each step (None: no clipping): 1.0 is the default
    of transformers' Trainer, which the LoRA (GLUE), LLM-Adapters/DoRA and DEFT reference scripts train with.
    """

    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    betas: tuple[float, float] = (0.9, 0.999)
    max_steps: int = 100
    warmup_steps: int | None = None
    schedule: str = "linear"
    step_gamma: float = 0.85
    step_periods: int = 3
    max_grad_norm: float | None = 1.0

    @property
    def num_warmup_steps(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else int(self.warmup_ratio * max(1, self.max_steps))


def bounded(default: float, low: float, high: float = math.inf) -> Any:
    """An option field whose value must lie in [low, high]: `dropout: float = bounded(0.0, 0.0, 1.0)`."""
    return dataclasses.field(default=default, metadata={"range": (low, high)})


@dataclass(frozen=True)
class MethodOptions:
    """Base of every method's options; subclasses add fields with defaults (`bounded` ones carry their range)."""

    def check(self, method: str) -> None:
        """BenchError for a value out of range: every number must be finite, every count at least 0, and a `bounded`
        field within its range. Override to add a method's own rules (call super)."""
        for option in dataclasses.fields(self):
            value = getattr(self, option.name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            low, high = option.metadata.get("range", (0 if isinstance(value, int) else -math.inf, math.inf))
            if not math.isfinite(value) or not low <= value <= high:
                accepted = (
                    f"[{low:g}, {high:g}]"
                    if math.isfinite(high)
                    else f"at least {low:g}"
                    if math.isfinite(low)
                    else "finite"
                )
                raise BenchError(
                    f"{method} option {option.name}={value!r} is out of range", f"pass a value that is {accepted}"
                )


class PeftMethod(nn.Module):
    """Base module of a fine-tuning method (see the module docstring for the hooks)."""

    name: ClassVar[str]
    knob_name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    needs_calibration: ClassVar[bool] = False
    trains: ClassVar[bool] = True  # False: nothing trains (zero-shot); a run takes no training step
    # How tables and figures name and draw the method (a matplotlib colour name). Read per class like `name`, so a
    # subclass method does not take its parent's: "" names it by `name` and draws it in a spare colour.
    display_name: ClassVar[str] = ""
    color: ClassVar[str] = ""
    # The project's own optimiser defaults (the "default" recipe); named recipes (methods.recipes) live in `recipes`.
    default_lr: ClassVar[float] = 5e-4
    default_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    default_warmup_ratio: ClassVar[float] = 0.06
    recipes: ClassVar[dict[str, dict[str, Recipe]]] = {}  # recipe name -> model family ("encoder", "decoder") -> Recipe

    def __init__(
        self,
        model: nn.Module,
        options: MethodOptions | None = None,
        optim: OptimConfig | None = None,
        head_prefixes: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.model = model
        self.options = options if options is not None else self.Options()
        self.optim = optim or OptimConfig()
        self.head_prefixes = head_prefixes
        self._head_ids = {id(p) for n, p in model.named_parameters() if head_prefixes and n.startswith(head_prefixes)}
        self.knob: int | None = None
        self.calibration_info: dict[str, Any] = {}

    # ----- hooks a method implements ---------------------------------------------------------------------------

    def knob_bounds(self) -> tuple[int, int]:
        """Smallest and largest knob value."""
        raise NotImplementedError

    def count_for_knob(self, knob: int) -> int:
        """Exact number of trainable parameters (task head excluded) that `attach(knob)` will create."""
        raise NotImplementedError

    def attach(self, knob: int) -> None:
        """Inject the method into `self.model` and leave exactly its parameters with requires_grad."""
        raise NotImplementedError

    def merged_model(self) -> nn.Module:
        """A plain dense model (no adapter modules) giving the same outputs as the trained one."""
        raise NotImplementedError

    def compute_calibration(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Statistics from training batches, before training (selection methods)."""
        return {}

    def load_calibration(self, state: dict[str, torch.Tensor]) -> None:
        """Take in what `compute_calibration` returned (fresh or from the cache)."""

    def calibration_settings(self) -> dict[str, Any]:
        """Everything besides model, data and seed that changes the calibration result."""
        return {}

    def extra_loss(self, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor | None:
        """A term added to the task loss (None: no term)."""
        return None

    def describe(self) -> dict[str, Any]:
        """Choices worth recording with every result (block size, init, score variant, ...)."""
        return {}

    def export_state(self) -> dict[str, torch.Tensor]:
        """What must be saved to reproduce the fine-tuned model from the base: trainable tensors by default."""
        return {name: p.detach() for name, p in self.model.named_parameters() if p.requires_grad}

    def load_selection(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Prepare `attach` from a saved `export_state()` instead of calibrating; returns the tensors left to load.

        Methods that select nothing from data need nothing; selection methods override it.
        """
        return state

    def load_trained(self, state: dict[str, torch.Tensor]) -> None:
        """Copy saved tensors into the attached model; shapes must match, and index tensors equal the re-attached selection."""
        own = self.model.state_dict()
        unknown = sorted(set(state) - set(own))
        if unknown:
            raise BenchError(
                f"the saved {self.name} state has tensors the re-attached model lacks ({unknown[:3]})",
                "evaluate it with the code version that trained it (record env.git)",
            )
        for name, tensor in state.items():
            if tensor.shape != own[name].shape:
                raise BenchError(
                    f"the saved {self.name} tensor {name} has shape {tuple(tensor.shape)}, the re-attached one {tuple(own[name].shape)}",
                    "evaluate it with the code version and record that trained it",
                )
            if not tensor.is_floating_point() and not torch.equal(tensor.to(own[name].dtype), own[name].cpu()):
                raise BenchError(
                    f"the saved {self.name} indices {name} differ from the re-attached selection",
                    "evaluate it with the code version that trained it (record env.git)",
                )
        self.model.load_state_dict(state, strict=False)

    def restore(self, knob: int, state: dict[str, torch.Tensor]) -> None:
        """Rebuild the trained model on a fresh base: attach at `knob` with the saved selection, then load `state`."""
        rest = self.load_selection(state)
        self.apply(knob)
        self.load_trained(rest)

    # ----- shared machinery ------------------------------------------------------------------------------------

    @classmethod
    def parse_options(cls, pairs: dict[str, str]) -> MethodOptions:
        """Build `Options` from `key=value` strings, converting to each field's type."""
        fields = {f.name: f for f in dataclasses.fields(cls.Options)}
        hints = typing.get_type_hints(cls.Options)
        values: dict[str, Any] = {}
        for key, text in pairs.items():
            if key not in fields:
                raise BenchError(
                    f"method {cls.name!r} has no option {key!r}", f"use one of: {', '.join(fields) or 'none'}"
                )
            values[key] = _convert(text, hints[key], f"option {key} of {cls.name}")
        options = cls.Options(**values)
        options.check(cls.name)
        return options

    def counts_before_calibration(self) -> bool:
        """Whether `knob_bounds` and `count_for_knob` are known before calibration (on a weightless model), so a budget
        can be checked before any weight loads. Methods whose counts come from calibration statistics return False."""
        return True

    def solve_budget(self, target: int) -> int:
        """The knob whose trainable count is closest to `target`; BenchError if outside the reachable range."""
        lowest, high = self.knob_bounds()
        low = lowest
        smallest, largest = self.count_for_knob(low), self.count_for_knob(high)
        if not smallest <= target <= largest:
            raise BenchError(
                f"budget of {target:,} trainable parameters is unreachable for {self.name} on this model",
                f"choose a budget between {smallest:,} and {largest:,} ({self.knob_name} {lowest}..{high})",
            )
        while low < high:  # smallest knob whose count reaches the target
            middle = (low + high) // 2
            if self.count_for_knob(middle) < target:
                low = middle + 1
            else:
                high = middle
        below = max(low - 1, lowest)
        return min((low, below), key=lambda knob: (abs(self.count_for_knob(knob) - target), knob))

    def calibrate(
        self,
        batches: Sequence[dict[str, torch.Tensor]],
        cache_dir: Path | None,
        context: dict[str, Any],
        head_probe_steps: int = 0,
    ) -> None:
        """Compute (or load from `cache_dir`) the calibration; `context` names model, data and seed. A new task head is
        first fitted alone for `head_probe_steps` steps and put back afterwards (`methods.head_probe`)."""
        if not self.needs_calibration:
            return
        probe_steps = head_probe_steps if head_module(self.model, self.head_prefixes) is not None else 0
        payload = {"method": self.name, "settings": self.calibration_settings(), "head_probe_steps": probe_steps}
        key = hashlib.sha256(json.dumps(payload | context, sort_keys=True, default=str).encode()).hexdigest()
        path = cache_dir / f"{self.name}-{key[:20]}.safetensors" if cache_dir else None
        probe: dict[str, float] = {}
        if path is not None and path.is_file():
            state, cached = load_file(path), True
        else:
            with probed_head(self.model, self.head_prefixes, batches, probe_steps) as probe:
                state = self.compute_calibration(batches)
            cached = False
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(f".{os.getpid()}.partial")
                save_file({k: v.contiguous() for k, v in state.items()}, partial)
                partial.replace(path)
        self.load_calibration(state)
        self.calibration_info = {
            "key": key,
            "loaded_from_cache": cached,
            "settings": self.calibration_settings(),
            "head_probe": {"steps": probe_steps, **probe},
        }

    def apply(self, knob: int) -> None:
        """Attach the method for `knob`, then make the task head trainable."""
        self.attach(knob)
        self.knob = knob
        for p in self.model.parameters():
            if id(p) in self._head_ids:
                p.requires_grad_(True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def trainable_count(self) -> int:
        """Trainable parameters of the method itself (task head excluded)."""
        return sum(p.numel() for p in self.trainable_parameters() if id(p) not in self._head_ids)

    def head_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if id(p) in self._head_ids)

    def adapter_bytes(self) -> int:
        """Size of `export_state()` serialized as safetensors."""
        return len(save({k: v.contiguous() for k, v in self.export_state().items()}))

    def forward(self, **batch: torch.Tensor) -> Any:
        return self.model(**batch)

    def training_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss to minimise on `batch` (`loss`: the task loss plus `extra_loss`, when the method adds one)."""
        loss, outputs = task_loss(self.model, batch)
        extra = self.extra_loss(batch, outputs)
        return {"loss": loss} if extra is None else {"loss": loss + extra, "extra_loss": extra}

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over the trainable parameters and its per-step LR schedule, in Lightning's form."""
        from transformers import get_linear_schedule_with_warmup

        parameters = self.trainable_parameters()
        if not parameters:
            raise BenchError(f"{self.name} left no trainable parameters", "check the method's targets and budget")
        optim = self.optim
        optimizer = torch.optim.AdamW(parameters, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
        total = max(1, optim.max_steps)
        if optim.schedule == "step":
            period = max(1, math.ceil(total / optim.step_periods))
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=period, gamma=optim.step_gamma)
        else:
            scheduler = get_linear_schedule_with_warmup(
                optimizer, num_warmup_steps=optim.num_warmup_steps, num_training_steps=total
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _convert(text: str, hint: Any, what: str) -> Any:
    """Convert a command-line string to `hint` (int, float, bool, str, tuple[str, ...], or Optional of those)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", ""):
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    try:
        if hint is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if typing.get_origin(hint) is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return hint(text)
    except (TypeError, ValueError):
        raise BenchError(
            f"{what} must be {getattr(hint, '__name__', hint)}, got {text!r}", "pass a value of that type"
        ) from None
