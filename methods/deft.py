"""DEFT: Density-Efficient Fine-Tuning (Runwal, Pedapati, Chen; arXiv 2402.01911), added to any base method.

Not peft's unrelated "DEFT" tuner. DEFT adds no adapter: it adds a density penalty on the MLP activation outputs
to the task loss, so the frozen backbone produces more exact zeros:

    L = L_task + λ · mean_{b,ℓ} mean_{t,j} a²_{b,t,j} / (a²_{b,t,j} + ε)

over the activation output `a` of every layer ℓ (`methods.targets.find_activations`: BERT's GELU, LLaMA's SiLU
`mlp.act_fn`), per sample b, averaged over its tokens t and units j. Padding tokens are excluded through the batch's
attention mask ([inferred]: DEFT's GLUE scripts pad to 128 and count padding; excluding it keeps the loss and the
measured density independent of the padding length). λ = 1.0 and ε = 1e-7 as in the reference code.

The project's defaults: LoRA with its own defaults as the base, lr 5e-4, AdamW (0.9, 0.999), no weight decay, linear
schedule with 6 % warm-up. The "paper" recipe, encoder (IBM/DEFT GLUE/lora.py and glue.sh, RoBERTa-large): LoRA
r 8 with α 16 (alpha = 2r), dropout 0.1, on W_q, W_v (adapter-transformers' LoRAConfig defaults); λ 1.0, ε 1e-7;
AdamW lr 3e-4; linear schedule with 6 % warm-up; weight decay 0 and betas (0.9, 0.999) [inferred: the scripts set
neither, HF's defaults]. Decoder: [inferred] DEFT publishes no decoder recipe (its SQuAD runs use Flan-T5 with
adapters): the LLM-Adapters LoRA recipe (q, k, v, up, down, alpha = 2r, dropout 0.05, lr 3e-4, 100 warm-up steps)
with λ 1.0, ε 1e-7.

Activations are captured only during the training forward (hooks live for one `training_losses` call), and dropped
every step. Everything else (knob, budget, calibration, attach, merge, export, restore) is the base method's, through an
inner instance of it on the same model; `base_options` passes options to it as `key=value;key=value`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from core.errors import BenchError
from methods.base import MethodOptions, OptimConfig, PeftMethod
from methods.density import per_sample_mean
from methods.lora import LoRA
from methods.recipes import Recipe
from methods.targets import ACTIVATION_PATTERNS, find_activations


@dataclass(frozen=True)
class DeftOptions(MethodOptions):
    base: str = "lora"  # the registered method DEFT is added to
    base_options: str = ""  # the base's options, "key=value;key=value"
    weight: float = 1.0  # λ
    epsilon: float = 1e-7  # ε

    def __post_init__(self) -> None:
        base_class(self.base).parse_options(self.parsed_base_options())
        if self.weight < 0 or self.epsilon <= 0:
            raise BenchError(
                f"deft needs weight >= 0 and epsilon > 0, got weight={self.weight}, epsilon={self.epsilon}",
                "pass e.g. weight=1.0 epsilon=1e-7",
            )

    def parsed_base_options(self) -> dict[str, str]:
        pairs = [part.strip() for part in self.base_options.split(";") if part.strip()]
        malformed = [pair for pair in pairs if "=" not in pair]
        if malformed:
            raise BenchError(f"deft base_options {malformed} are not key=value", 'write them as "key=value;key=value"')
        return dict(pair.split("=", 1) for pair in pairs)


def base_class(name: str) -> type[PeftMethod]:
    """The registered method called `name`, refusing DEFT itself."""
    from methods import get_method

    if name == Deft.name:
        raise BenchError("deft cannot be its own base", "pass base=lora (or another method)")
    return get_method(name)


def density_loss(activations: Iterable[torch.Tensor], attention_mask: torch.Tensor, epsilon: float) -> torch.Tensor:
    """mean over layers and samples of the per-sample mean of a²/(a² + ε) over real tokens and units."""
    per_layer = [
        per_sample_mean(a.float().square() / (a.float().square() + epsilon), attention_mask) for a in activations
    ]
    return torch.stack(per_layer).mean()


class Deft(PeftMethod):
    """A base method plus DEFT's activation-density penalty (see the module docstring)."""

    name = "deft"
    knob_name = "base knob"  # replaced per instance by the base method's knob name
    display_name = "DEFT"
    color = "tab:pink"
    Options = DeftOptions
    default_lr = LoRA.default_lr  # the default base; pass --lr for another base
    recipes: ClassVar[dict[str, dict[str, Recipe]]] = {
        "paper": {
            "encoder": Recipe(
                source="IBM/DEFT GLUE/lora.py and glue.sh (RoBERTa-large)",
                lr=3e-4,
                options={
                    "base": "lora",
                    "base_options": "targets=q,v;alpha_per_rank=2.0;dropout=0.1",
                    "weight": "1.0",
                    "epsilon": "1e-7",
                },
            ),
            "decoder": Recipe(
                source="[inferred] DEFT's density loss on the LLM-Adapters LoRA recipe",
                lr=3e-4,
                options={
                    "base": "lora",
                    "base_options": "targets=q,k,v,up,down;alpha_per_rank=2.0;dropout=0.05",
                    "weight": "1.0",
                    "epsilon": "1e-7",
                },
                warmup_steps=100,
            ),
        }
    }

    def __init__(
        self,
        model: nn.Module,
        options: DeftOptions | None = None,
        optim: OptimConfig | None = None,
        head_prefixes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(model, options, optim, head_prefixes)
        base = base_class(self.options.base)
        self.inner = base(model, base.parse_options(self.options.parsed_base_options()), self.optim, head_prefixes)
        self.knob_name = self.inner.knob_name
        self.needs_calibration = self.inner.needs_calibration
        if model.config.model_type not in ACTIVATION_PATTERNS:
            raise BenchError(
                f"deft has no MLP activation to hook on model type {model.config.model_type!r}",
                "add it to ACTIVATION_PATTERNS in methods/targets.py",
            )
        self.activation_modules = [module for _, module in find_activations(model)]
        self.captured: list[torch.Tensor] = []

    # ----- the base method's budget, calibration, injection and export -----------------------------------------

    def counts_before_calibration(self) -> bool:
        return self.inner.counts_before_calibration()

    def knob_bounds(self) -> tuple[int, int]:
        return self.inner.knob_bounds()

    def count_for_knob(self, knob: int) -> int:
        return self.inner.count_for_knob(knob)

    def calibrate(
        self,
        batches: Sequence[dict[str, torch.Tensor]],
        cache_dir: Path | None,
        context: dict[str, Any],
        head_probe_steps: int = 0,
    ) -> None:
        # the base's cache entry, shared with runs without DEFT
        self.inner.calibrate(batches, cache_dir, context, head_probe_steps)
        self.calibration_info = self.inner.calibration_info

    def attach(self, knob: int) -> None:
        self.inner.apply(knob)
        self.model = self.inner.model

    def merged_model(self) -> nn.Module:
        return self.inner.merged_model()

    def export_state(self) -> dict[str, torch.Tensor]:
        return self.inner.export_state()

    def load_selection(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.inner.load_selection(state)

    def load_trained(self, state: dict[str, torch.Tensor]) -> None:
        self.inner.load_trained(state)

    def describe(self) -> dict:
        return {
            "base": self.options.base,
            "base_choices": self.inner.describe(),
            "weight": self.options.weight,
            "epsilon": self.options.epsilon,
            "hooked": "MLP activation outputs (methods.targets.find_activations)",
            "padding": "[inferred] excluded from the density loss via attention_mask",
            "reference": "arXiv 2402.01911 (not peft's DEFT tuner)",
        }

    # ----- the density penalty ---------------------------------------------------------------------------------

    @contextmanager
    def capturing(self) -> Iterator[None]:
        """Keep every activation output of the enclosed forward in `self.captured`; drop them on exit."""
        handles = [
            module.register_forward_hook(lambda _module, _inputs, output: self.captured.append(output))
            for module in self.activation_modules
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            self.captured = []

    def training_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with self.capturing():
            return super().training_losses(batch)

    def extra_loss(self, batch: dict[str, torch.Tensor], outputs: Any) -> torch.Tensor | None:
        if len(self.captured) != len(self.activation_modules):
            raise RuntimeError(
                f"deft expected {len(self.activation_modules)} captured activations, got {len(self.captured)}"
            )
        return self.options.weight * density_loss(self.captured, batch["attention_mask"], self.options.epsilon)
