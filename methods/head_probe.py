"""A linear probe of a new task head before calibration, undone before training.

Selection by loss gradients (SMT's blocks, row-SFT's rows) assumes the output layer already maps the base model's
features to the task, as a decoder's pretrained LM head does in the papers' setting. A freshly initialised classifier
does not: its gradients point along a random projection. `probed_head` fits the head alone on the calibration batches
(the base model's features computed once, in eval mode), lets calibration run through it, then puts the head's
initial values back, so training starts from the same head as every other method.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

PROBE_LR = 1e-2


def head_module(model: nn.Module, head_prefixes: tuple[str, ...]) -> nn.Module | None:
    """The task head (`classifier.` -> `model.classifier`), or None for a model without a new head."""
    return model.get_submodule(head_prefixes[0].rstrip(".")) if len(head_prefixes) == 1 else None


def _head_inputs(model: nn.Module, head: nn.Module, batches: Sequence[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    """What the head receives for each batch, from one eval-mode forward pass without gradients."""
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _, args: captured.append(args[0].detach()))
    device = next(model.parameters()).device
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for batch in batches:
                model(**{key: value.to(device) for key, value in batch.items() if key != "labels"})
    finally:
        hook.remove()
        model.train(training)
    return captured


def _loss(logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Squared error for a one-output (regression) head, cross-entropy otherwise, as the task loss is. A per-token
    head (a decoder's `score`) is read at the last real token, as the model reads it."""
    if logits.dim() == 3:
        logits = logits[torch.arange(len(logits)), attention_mask.sum(-1) - 1]
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


@contextmanager
def probed_head(
    model: nn.Module, head_prefixes: tuple[str, ...], batches: Sequence[dict[str, torch.Tensor]], steps: int
) -> Iterator[dict[str, float]]:
    """Within the block, the head is fitted by `steps` full-batch AdamW steps on `batches`; it yields the probe's loss
    before and after (empty if there is no head or `steps` is 0). On exit the head's initial values return."""
    head = head_module(model, head_prefixes)
    if head is None or steps == 0 or not batches:
        yield {}
        return
    initial = {name: p.detach().clone() for name, p in head.named_parameters()}
    inputs = _head_inputs(model, head, batches)
    device = next(model.parameters()).device
    labels = [batch["labels"].to(device) for batch in batches]
    masks = [batch["attention_mask"].to(device) for batch in batches]
    flags = {name: p.requires_grad for name, p in head.named_parameters()}
    training = head.training
    optimizer = torch.optim.AdamW(head.parameters(), lr=PROBE_LR, weight_decay=0.0)

    def probe_loss() -> torch.Tensor:
        total = sum(_loss(head(x), y, mask) * len(y) for x, y, mask in zip(inputs, labels, masks))
        return total / sum(len(y) for y in labels)

    try:
        head.eval()
        head.requires_grad_(True)
        with torch.no_grad():
            before = probe_loss().item()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            probe_loss().backward()
            optimizer.step()
        with torch.no_grad():
            after = probe_loss().item()
        for p in head.parameters():
            p.grad = None
        head.train(training)
        yield {"loss_before": before, "loss_after": after}
    finally:
        with torch.no_grad():
            for name, p in head.named_parameters():
                p.copy_(initial[name])
                p.requires_grad_(flags[name])
        head.train(training)
