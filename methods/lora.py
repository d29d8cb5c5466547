"""LoRA and DoRA through Hugging Face peft, the field's reference implementation.

Knob: the rank r. Trainable per adapted matrix: r (d_in + d_out) for LoRA, plus d_out magnitudes for DoRA.
Defaults follow the papers: W_q, W_v with alpha = 2r on encoders (GLUE); q, k, v, up, down with alpha = 2r on
decoders (commonsense/arithmetic recipes). DoRA uses peft's norm-detach, as in every DoRA result.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property

import peft
from torch import nn

from methods.base import MethodOptions, PeftMethod, bounded
from methods.targets import find_linears, role_regex

ENCODER_ROLES = ("q", "v")
DECODER_ROLES = ("q", "k", "v", "up", "down")


def default_roles(model: nn.Module) -> tuple[str, ...]:
    """q,v for encoders (LoRA paper GLUE); q,k,v,up,down for decoders (LLM-Adapters/DoRA)."""
    return DECODER_ROLES if getattr(model.config, "is_decoder", False) or model.config.model_type in ("llama", "mistral", "qwen2") else ENCODER_ROLES


@dataclass(frozen=True)
class LoraOptions(MethodOptions):
    targets: tuple[str, ...] | None = None  # roles; None = the paper default for the model family
    alpha_per_rank: float = 2.0  # lora_alpha = alpha_per_rank * r
    dropout: float = bounded(0.0, 0.0, 1.0)
    rslora: bool = False


class LoRA(PeftMethod):
    """Low-rank update B A on each target matrix (peft `LoraConfig`)."""

    name = "lora"
    knob_name = "rank"
    Options = LoraOptions
    use_dora = False

    @property
    def roles(self) -> tuple[str, ...]:
        return self.options.targets or default_roles(self.model)

    @cached_property
    def target_shapes(self) -> list[tuple[int, int]]:
        """(d_out, d_in) of every target matrix, read from the base model before injection."""
        return [(m.out_features, m.in_features) for _, m in find_linears(self.model, self.roles)]

    def knob_bounds(self) -> tuple[int, int]:
        return (1, min(min(shape) for shape in self.target_shapes))

    def count_for_knob(self, knob: int) -> int:
        return sum(knob * (d_out + d_in) + (d_out if self.use_dora else 0) for d_out, d_in in self.target_shapes)

    def attach(self, knob: int) -> None:
        self.target_shapes  # noqa: B018 - read the shapes before peft wraps the layers
        config = peft.LoraConfig(
            r=knob,
            lora_alpha=self.options.alpha_per_rank * knob,
            lora_dropout=self.options.dropout,
            target_modules=role_regex(self.model, self.roles),
            use_dora=self.use_dora,
            use_rslora=self.options.rslora,
        )
        self.model = peft.get_peft_model(self.model, config)

    def merged_model(self) -> nn.Module:
        return copy.deepcopy(self.model).merge_and_unload()

    def describe(self) -> dict:
        return {"targets": list(self.roles), "peft_version": peft.__version__, "lora_alpha": self.options.alpha_per_rank * (self.knob or 0), "init": "peft default (A kaiming-uniform, B zero)"}


class DoRA(LoRA):
    """Weight-decomposed LoRA: per-output-row magnitude m times the LoRA-updated direction (peft `use_dora`)."""

    name = "dora"
    use_dora = True
