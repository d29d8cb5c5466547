"""LoRA and DoRA through Hugging Face peft, the field's reference implementation.

Knob: the rank r. Trainable per adapted matrix: r (d_in + d_out) for LoRA, plus d_out magnitudes for DoRA.
DoRA uses peft's norm-detach, as in every DoRA result.

The project's defaults ("default" recipe): targets W_q, W_v on encoders and q, k, v, up, down on decoders (the
papers' target sets); alpha = 2r and dropout 0 on both (the project's choice, tuned for short runs); lr 5e-4, AdamW
betas (0.9, 0.999), no weight decay, linear schedule with 6 % warm-up.

The "paper" recipe (`--recipe paper`), value by value:
- LoRA, encoder (LoRA paper, Hu et al. 2021, Table 9, RoBERTa-base on GLUE): targets W_q, W_v; alpha = r (α 8 at
  r 8; microsoft/LoRA's examples/NLU/roberta_base_mnli.sh passes 16, the paper's table is followed); dropout 0 (none
  in the paper, loralib's default); lr 5e-4 (Table 9: MNLI, SST-2, QQP, RTE; 4e-4 on MRPC, CoLA, QNLI, STS-B); AdamW
  with torch's betas (0.9, 0.999); weight decay 0.1 (roberta_base_mnli.sh); linear schedule, warm-up ratio 0.06.
- LoRA, decoder (LLM-Adapters commonsense/math recipe, as quoted by DoRA's Table 1 baselines): targets q, k, v, up,
  down; alpha = 2r (α 64 at r 32); dropout 0.05; lr 3e-4; HF Trainer's AdamW (betas (0.9, 0.999), weight decay 0);
  linear schedule with 100 warm-up steps.
- DoRA, decoder (DoRA paper, Liu et al. 2024, Table 8; NVlabs/DoRA llama_7B_Dora.sh): targets q, k, v, up, down;
  alpha = 2r; dropout 0.05; lr 1e-4 (LLaMA-7B r 32 and LLaMA-3-8B); AdamW (0.9, 0.999), weight decay 0; linear
  schedule with 100 warm-up steps.
- DoRA, encoder: [inferred] the paper has no GLUE experiment; the LoRA paper's GLUE recipe above.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from torch import nn

from methods.base import MethodOptions, PeftMethod, bounded
from methods.recipes import Recipe
from methods.targets import find_linears, role_regex

ENCODER_ROLES = ("q", "v")
DECODER_ROLES = ("q", "k", "v", "up", "down")


def default_roles(model: nn.Module) -> tuple[str, ...]:
    """q,v for encoders (LoRA paper GLUE); q,k,v,up,down for decoders (LLM-Adapters/DoRA)."""
    return (
        DECODER_ROLES
        if getattr(model.config, "is_decoder", False) or model.config.model_type in ("llama", "mistral", "qwen2")
        else ENCODER_ROLES
    )


@dataclass(frozen=True)
class LoraOptions(MethodOptions):
    targets: tuple[str, ...] | None = None  # roles; None = the papers' set for the model family (q,v or q,k,v,up,down)
    alpha_per_rank: float = 2.0  # lora_alpha = alpha_per_rank * r; the project's choice (LoRA's GLUE paper: 1)
    dropout: float = bounded(0.0, 0.0, 1.0)  # the project's choice (LLM-Adapters, DoRA: 0.05; DEFT's reference: 0.1)
    rslora: bool = False


LORA_GLUE = Recipe(
    source="LoRA paper Table 9 (RoBERTa-base, GLUE); weight decay from microsoft/LoRA examples/NLU/roberta_base_mnli.sh",
    lr=5e-4,
    options={"targets": "q,v", "alpha_per_rank": "1.0", "dropout": "0.0"},
    weight_decay=0.1,
    warmup_ratio=0.06,
)
LLM_ADAPTERS_OPTIONS = {"targets": "q,k,v,up,down", "alpha_per_rank": "2.0", "dropout": "0.05"}


class LoRA(PeftMethod):
    """Low-rank update B A on each target matrix (peft `LoraConfig`)."""

    name = "lora"
    knob_name = "rank"
    display_name = "LoRA"
    color = "tab:blue"
    Options = LoraOptions
    use_dora = False
    recipes: ClassVar[dict[str, dict[str, Recipe]]] = {
        "paper": {
            "encoder": LORA_GLUE,
            "decoder": Recipe(
                source="LLM-Adapters commonsense/math recipe (finetune.py; DoRA Table 1 baselines)",
                lr=3e-4,
                options=LLM_ADAPTERS_OPTIONS,
                warmup_steps=100,
            ),
        }
    }

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
        import peft  # here, not at the top: counting a budget needs no peft

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
        import peft

        return {
            "targets": list(self.roles),
            "peft_version": peft.__version__,
            "lora_alpha": self.options.alpha_per_rank * (self.knob or 0),
            "init": "peft default (A kaiming-uniform, B zero)",
        }


class DoRA(LoRA):
    """Weight-decomposed LoRA: per-output-row magnitude m times the LoRA-updated direction (peft `use_dora`)."""

    name = "dora"
    display_name = "DoRA"
    color = "tab:orange"
    use_dora = True
    recipes: ClassVar[dict[str, dict[str, Recipe]]] = {
        "paper": {
            "encoder": dataclasses.replace(LORA_GLUE, source="[inferred] DoRA has no GLUE recipe: " + LORA_GLUE.source),
            "decoder": Recipe(
                source="DoRA paper Table 8 (LLaMA-7B r32, LLaMA-3-8B); NVlabs/DoRA llama_7B_Dora.sh",
                lr=1e-4,
                options=LLM_ADAPTERS_OPTIONS,
                warmup_steps=100,
            ),
        }
    }
