"""The attention every model loads with: transformers' SDPA, computed in fp32 when CPU autocast hands it bf16.

Under bf16 autocast `scaled_dot_product_attention` runs in bf16 (whatever its inputs' dtypes), and PyTorch's CPU
flash-attention kernel is slower in bf16 than in fp32: its backward takes about twice as long (SmolLM2-135M at 4 x 128
tokens: 30 attention backward calls 0.44 s in bf16, 0.17-0.20 s in fp32, `benchmarks/precision_cost.py`), which held a
bf16-mixed training step to 1.3x the fp32 step. Casting the three to fp32 for this one op (its output back to bf16)
costs a few copies and gives the fp32 kernel's speed and accuracy. Anywhere else (fp32, GPUs, CPU without autocast)
the function is transformers' SDPA unchanged, so fp32 runs compute exactly what `attn_implementation="sdpa"` computes.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "sdpa_fp32_cpu_autocast"


def sdpa_fp32_under_cpu_autocast(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    """transformers' SDPA attention; on a CPU under bf16 autocast (which would run it in bf16), computed in fp32 and
    returned in bf16."""
    if not (
        query.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    ):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast("cpu", enabled=False):
        output, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
    return output.to(torch.bfloat16), weights


AttentionInterface.register(ATTENTION, sdpa_fp32_under_cpu_autocast)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # the masks SDPA's own name gets
