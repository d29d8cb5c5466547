"""Greedy generation with continuous batching, whose outputs equal one-at-a-time generation.

Up to `batch_size` sequences decode together. Prompts are taken longest first; when a sequence ends (end-of-sequence
token or `max_new_tokens`) it leaves the batch at once and the next prompts are prefilled together and join it, so one
long answer never keeps finished rows busy. Rows are left-padded to a common cache length with an attention mask, and
each row's position ids count only its own tokens, so padding changes nothing a sequence attends to (LLM-Adapters#61
shows right padding breaking exactly this); padding columns that no remaining row needs are dropped when rows leave.
Decoding is greedy (LLM-Adapters uses 4 beams; greedy is the deterministic, batch-invariant choice). Prompts are
encoded as in training and lm-eval (`tasks.prompts.encode_text`: the same BOS policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import DynamicCache

from tasks.base import progress_bar
from tasks.prompts import encode_text


@dataclass
class _Batch:
    """The sequences decoding together: their prompt indices, shared key/value cache, padding mask, next-token logits."""

    rows: list[int]
    cache: DynamicCache
    mask: Tensor
    logits: Tensor


@torch.inference_mode()
def generate(
    model: nn.Module, tokenizer: Any, prompts: list[str], max_new_tokens: int, batch_size: int, progress: bool = False
) -> list[str]:
    """Greedy continuations of `prompts` (the generated text only, special tokens removed); `progress` counts finished answers on stderr."""
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) and batch_size ({batch_size}) must be at least 1")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    encoded = [encode_text(prompt, tokenizer) for prompt in prompts]
    queue = sorted(range(len(prompts)), key=lambda index: len(encoded[index]), reverse=True)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    generated: dict[int, list[int]] = {index: [] for index in range(len(prompts))}
    batch: _Batch | None = None
    with progress_bar(len(prompts), "generate", progress, unit="answer") as bar:
        while queue or batch is not None:
            free = batch_size - (len(batch.rows) if batch else 0)
            if free and queue:
                admitted, queue = queue[:free], queue[free:]
                batch = _join(batch, _prefill(model, admitted, [encoded[index] for index in admitted], pad_id, device))
            tokens = batch.logits.argmax(-1)
            still_running = []
            for row, (index, token) in enumerate(zip(batch.rows, tokens.tolist())):
                if token != tokenizer.eos_token_id:
                    generated[index].append(token)
                    if len(generated[index]) < max_new_tokens:
                        still_running.append(row)
            bar.update(len(batch.rows) - len(still_running))
            batch = _keep(batch, still_running)
            if batch is not None:
                batch = _decode_step(model, batch, tokens[still_running])
    model.train(was_training)
    return [tokenizer.decode(generated[index], skip_special_tokens=True) for index in range(len(prompts))]


def _prefill(
    model: nn.Module, rows: list[int], sequences: list[list[int]], pad_id: int, device: torch.device
) -> _Batch:
    """Run the left-padded prompts through the model, filling a fresh cache."""
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.tensor([[pad_id] * (width - len(sequence)) + sequence for sequence in sequences], device=device)
    mask = torch.tensor([[0] * (width - len(sequence)) + [1] * len(sequence) for sequence in sequences], device=device)
    cache = DynamicCache()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    output = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return _Batch(rows, cache, mask, output.logits[:, -1])


def _decode_step(model: nn.Module, batch: _Batch, tokens: Tensor) -> _Batch:
    """Feed each row its newest token and return the batch with the following logits."""
    positions = batch.mask.sum(-1, keepdim=True)
    mask = torch.cat([batch.mask, batch.mask.new_ones(len(batch.rows), 1)], dim=-1)
    output = model(
        input_ids=tokens[:, None],
        attention_mask=mask,
        position_ids=positions,
        past_key_values=batch.cache,
        use_cache=True,
    )
    return _Batch(batch.rows, batch.cache, mask, output.logits[:, -1])


def _join(running: _Batch | None, joining: _Batch) -> _Batch:
    """One batch holding both, the shorter cache left-padded to the longer one's length.

    Edits the `keys`/`values` tensors of the cache's `DynamicLayer`s in place, as `_keep` does (transformers 5).
    """
    if running is None:
        return joining
    width = max(running.mask.shape[-1], joining.mask.shape[-1])
    for layer, new_layer in zip(running.cache.layers, joining.cache.layers, strict=True):
        layer.keys = torch.cat([_left_pad(layer.keys, width, -2), _left_pad(new_layer.keys, width, -2)])
        layer.values = torch.cat([_left_pad(layer.values, width, -2), _left_pad(new_layer.values, width, -2)])
    mask = torch.cat([_left_pad(running.mask, width, -1), _left_pad(joining.mask, width, -1)])
    return _Batch(running.rows + joining.rows, running.cache, mask, torch.cat([running.logits, joining.logits]))


def _keep(batch: _Batch, kept: list[int]) -> _Batch | None:
    """The batch restricted to rows `kept` (None when empty), without the padding columns none of them needs."""
    if not kept:
        return None
    if len(kept) == len(batch.rows):
        return batch
    index = torch.tensor(kept, device=batch.mask.device)
    mask = batch.mask[index]
    unused = int((mask.cumsum(-1) == 0).sum(-1).min())
    for layer in batch.cache.layers:
        layer.keys, layer.values = layer.keys[index, :, unused:], layer.values[index, :, unused:]
    return _Batch([batch.rows[row] for row in kept], batch.cache, mask[:, unused:], batch.logits[index])


def _left_pad(tensor: Tensor, width: int, dim: int) -> Tensor:
    """`tensor` zero-padded at the start of `dim` (the sequence axis) to `width`."""
    missing = width - tensor.shape[dim]
    return F.pad(tensor, (0, 0) * (-dim - 1) + (missing, 0)) if missing else tensor
