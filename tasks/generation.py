"""Batched greedy generation whose outputs equal one-at-a-time generation.

Prompts are left-padded with an attention mask, so every sequence's last prompt token sits in the final column and
new tokens are appended in lockstep; position ids follow the mask, so padding changes nothing a prompt attends to
(LLM-Adapters#61 shows right padding breaking exactly this). Prompts are sorted by length before batching to keep
padding small; outputs come back in the input order. Decoding is greedy (LLM-Adapters uses 4 beams; greedy is the
deterministic, batch-invariant choice) and stops at the end-of-sequence token or `max_new_tokens`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


@torch.inference_mode()
def generate(model: nn.Module, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of `prompts` (the generated text only, special tokens removed)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    encoded = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    order = sorted(range(len(prompts)), key=lambda index: len(encoded[index]), reverse=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(encoded[index]) for index in chunk)
        input_ids = torch.tensor([[pad_id] * (width - len(encoded[index])) + encoded[index] for index in chunk], device=device)
        attention_mask = torch.tensor([[0] * (width - len(encoded[index])) + [1] * len(encoded[index]) for index in chunk], device=device)
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for index, row in zip(chunk, generated[:, width:].tolist()):
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            outputs[index] = tokenizer.decode(row, skip_special_tokens=True)
    model.train(was_training)
    return [outputs[index] for index in range(len(prompts))]
