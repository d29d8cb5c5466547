"""The training loss of a causal LM, projected onto the vocabulary at the supervised positions only, against
transformers' own loss over every position (`model(**batch).loss`, `ForCausalLMLoss`): equal losses and gradients on
real commonsense batches, with the prompt masked or not, for the whole model and through a LoRA adapter."""

from __future__ import annotations

import pytest
import torch

from core.labels import IGNORED
from methods.lora import LoRA
from methods.task_loss import is_language_modelling, task_loss
from tasks import get_task
from tasks.data_source import DataSource
from tasks.prompts import build_prompt, encode_for_training
from tests.conftest import batch_of

RTOL = 1e-5  # fp32; the two losses sum the same terms in a different order


# the tied embedding and output layer, the first attention and last MLP projections, the final norm
CHECKED = (
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.29.mlp.down_proj.weight",
    "model.norm.weight",
)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    """One real row of each of four test sets: prompts and answers of different lengths."""
    names = ("piqa", "winogrande", "arc-e", "obqa")
    return [get_task(f"commonsense/{name}").load("test", DataSource(), limit=1)[0] for name in names]


def _batch(rows: list[dict], tokenizer, mask_prompt: bool) -> dict[str, torch.Tensor]:
    """`rows` encoded for training and right-padded into one batch, as in a run."""
    features = [
        encode_for_training(build_prompt(row["instruction"], row["input"]), row["output"], tokenizer, 256, mask_prompt)
        for row in rows
    ]
    return get_task("commonsense/all").collate(features, tokenizer)


def _loss_and_grads(
    loss: torch.Tensor, model: torch.nn.Module, wanted: tuple[str, ...] = ()
) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and its gradients for the trainable parameters (those named in `wanted`, if given)."""
    chosen = {name: p for name, p in model.named_parameters() if p.requires_grad and (not wanted or name in wanted)}
    grads = torch.autograd.grad(loss, list(chosen.values()))
    return loss.item(), dict(zip(chosen, grads, strict=True))


@pytest.mark.parametrize("mask_prompt", [True, False])
def test_supervised_positions_give_transformers_loss_and_gradients(smollm2, rows, mask_prompt: bool) -> None:
    model = smollm2.model.eval()  # no dropout, so both forwards see the same network
    batch = _batch(rows, smollm2.tokenizer, mask_prompt)
    supervised = (batch["labels"][:, 1:] != IGNORED).sum().item()
    assert 0 < supervised < batch["labels"].numel() - 4  # padding is never scored; a masked prompt is not either
    assert is_language_modelling(model, batch)

    loss, outputs = task_loss(model, batch)
    assert outputs.logits.shape == (supervised, model.config.vocab_size)  # one projection per scored token
    ours, our_grads = _loss_and_grads(loss, model, CHECKED)
    reference, reference_grads = _loss_and_grads(model(**batch).loss, model, CHECKED)

    assert len(reference_grads) == len(CHECKED)
    assert ours == pytest.approx(reference, rel=RTOL)
    for name, grad in reference_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_through_a_lora_adapter_the_training_loss_is_transformers_loss(smollm2, rows) -> None:
    method = LoRA(smollm2.model)
    method.apply(method.knob_bounds()[0])
    method.model.eval()
    batch = _batch(rows, smollm2.tokenizer, mask_prompt=True)

    ours, our_grads = _loss_and_grads(method.training_losses(batch)["loss"], method.model)
    reference, reference_grads = _loss_and_grads(method.model(**batch).loss, method.model)

    assert our_grads and all("lora_" in name for name in our_grads)
    assert ours == pytest.approx(reference, rel=RTOL)
    for name, grad in reference_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-7, msg=name)


def test_a_batch_with_no_scored_token_has_no_loss_as_in_transformers(smollm2, rows) -> None:
    batch = _batch(rows, smollm2.tokenizer, mask_prompt=True)
    batch["labels"] = torch.full_like(batch["labels"], IGNORED)
    with torch.no_grad():
        assert torch.isnan(task_loss(smollm2.model, batch)[0])
        assert torch.isnan(smollm2.model(**batch).loss)


def test_a_classifier_keeps_its_own_loss(minilm_classifier, sst2_rows) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:4], minilm_classifier.tokenizer)
    model = minilm_classifier.model.eval()
    assert not is_language_modelling(model, batch)
    with torch.no_grad():
        assert task_loss(model, batch)[0].item() == model(**batch).loss.item()
