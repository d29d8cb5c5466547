"""Where the weight matrices of each architecture live, named by role.

Methods speak of roles (`q`, `k`, `v`, `o`, `gate`, `up`, `down`); this table maps a role to the module-name
suffix of each supported `model_type`, so one method config works on BERT, RoBERTa, DeBERTa and LLaMA models.
"""

from __future__ import annotations

import re

from torch import nn

from core.errors import BenchError

ROLES = ("q", "k", "v", "o", "gate", "up", "down")

# Regexes matched against the full module name (`model.named_modules()`).
_BERT_LIKE = {
    "q": r"attention\.self\.query",
    "k": r"attention\.self\.key",
    "v": r"attention\.self\.value",
    "o": r"attention\.output\.dense",
    "up": r"intermediate\.dense",
    "down": r"layer\.\d+\.output\.dense",
}
_LLAMA_LIKE = {
    "q": r"self_attn\.q_proj",
    "k": r"self_attn\.k_proj",
    "v": r"self_attn\.v_proj",
    "o": r"self_attn\.o_proj",
    "gate": r"mlp\.gate_proj",
    "up": r"mlp\.up_proj",
    "down": r"mlp\.down_proj",
}
_DEBERTA_V2 = {
    "q": r"attention\.self\.query_proj",
    "k": r"attention\.self\.key_proj",
    "v": r"attention\.self\.value_proj",
    "o": r"attention\.output\.dense",
    "up": r"intermediate\.dense",
    "down": r"layer\.\d+\.output\.dense",
}
ROLE_PATTERNS: dict[str, dict[str, str]] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "deberta-v2": _DEBERTA_V2,
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
}
# The module whose output is the MLP activation (DEFT's density is measured there).
ACTIVATION_PATTERNS: dict[str, str] = {
    "bert": r"intermediate\.intermediate_act_fn",
    "roberta": r"intermediate\.intermediate_act_fn",
    "deberta-v2": r"intermediate\.intermediate_act_fn",
    "llama": r"mlp\.act_fn",
    "mistral": r"mlp\.act_fn",
    "qwen2": r"mlp\.act_fn",
}


def _patterns(model: nn.Module) -> dict[str, str]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ROLE_PATTERNS:
        raise BenchError(
            f"model type {model_type!r} has no role table",
            f"add its module names to ROLE_PATTERNS in methods/targets.py (known: {', '.join(ROLE_PATTERNS)})",
        )
    return ROLE_PATTERNS[model_type]


def role_regex(model: nn.Module, roles: tuple[str, ...] | list[str]) -> str:
    """One regex matching the full names of every module with one of `roles`."""
    patterns = _patterns(model)
    unknown = [role for role in roles if role not in patterns]
    if unknown:
        raise BenchError(
            f"role(s) {unknown} do not exist for model type {model.config.model_type!r}",
            f"choose targets among {', '.join(patterns)}",
        )
    return r"^(?:.*\.)?(?:" + "|".join(patterns[role] for role in roles) + r")$"


def find_linears(model: nn.Module, roles: tuple[str, ...] | list[str]) -> list[tuple[str, nn.Linear]]:
    """The (name, nn.Linear) pairs of `model` that play one of `roles`, in module order."""
    regex = re.compile(role_regex(model, roles))
    found = [
        (name, module) for name, module in model.named_modules() if regex.match(name) and isinstance(module, nn.Linear)
    ]
    if not found:
        raise BenchError(
            f"no linear layer of {model.__class__.__name__} matches roles {list(roles)}", "check the targets option"
        )
    return found


def role_of(model: nn.Module, name: str) -> str:
    """The role of the module called `name`."""
    for role, pattern in _patterns(model).items():
        if re.search(r"(?:^|\.)" + pattern + r"$", name):
            return role
    raise KeyError(name)


def zero_gradient_bias_roles(model: nn.Module) -> tuple[str, ...]:
    """Roles whose bias has an identically zero gradient, so no method may train (or count) it.

    The key bias of BERT/RoBERTa attention with absolute positions: it adds q_i·b_k to every score of query i, which
    softmax ignores (its rows sum to one), so dL/db_k = Σ_i Σ_j (dL/ds_ij) q_i = 0 up to rounding (measured ~1e-11).
    Not on DeBERTa-v2 (its position-to-content term scores keys by position) nor on rotary models (the rotated bias
    depends on the key's position), whose key biases do learn.
    """
    config = model.config
    absolute = getattr(config, "position_embedding_type", "absolute") == "absolute"
    return ("k",) if config.model_type in ("bert", "roberta") and absolute else ()


def find_activations(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The MLP activation modules of `model`, one per layer, in layer order."""
    model_type = model.config.model_type
    regex = re.compile(r"^(?:.*\.)?" + ACTIVATION_PATTERNS[model_type] + r"$")
    return [(name, module) for name, module in model.named_modules() if regex.match(name)]
