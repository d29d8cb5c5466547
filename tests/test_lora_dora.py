"""LoRA and DoRA (peft) behind the one interface: counts, optimizer contents, identity at init, merge."""

from __future__ import annotations

import pytest
import torch

from methods.full import FullFineTuning
from methods.lora import DoRA, LoRA, LoraOptions
from tests.conftest import batch_of, logits, train_steps

MERGE_ATOL = 1e-5  # fp32 logits of a merged vs unmerged adapter on MiniLM


@pytest.mark.parametrize("method_cls", [LoRA, DoRA])
@pytest.mark.parametrize("rank", [1, 8, 64])
def test_trainable_count_matches_the_analytic_formula(minilm_classifier, method_cls, rank: int) -> None:
    config = minilm_classifier.model.config
    d, layers = config.hidden_size, config.num_hidden_layers
    expected = layers * 2 * rank * (d + d) + (layers * 2 * d if method_cls is DoRA else 0)  # q and v are d x d
    method = method_cls(minilm_classifier.model, head_prefixes=minilm_classifier.head_prefixes)
    assert method.count_for_knob(rank) == expected
    method.apply(rank)
    assert method.trainable_count() == expected
    assert method.head_count() == d * 2 + 2


def test_decoder_default_targets_count(smollm2) -> None:
    config = smollm2.model.config
    d, ff, kv = (
        config.hidden_size,
        config.intermediate_size,
        config.num_key_value_heads * (config.hidden_size // config.num_attention_heads),
    )
    per_layer = (d + d) + (d + kv) * 2 + (d + ff) * 2  # q, k, v, up, down per unit of rank
    method = LoRA(smollm2.model)
    assert method.count_for_knob(4) == 4 * config.num_hidden_layers * per_layer


@pytest.mark.parametrize("method_cls", [LoRA, DoRA, FullFineTuning])
def test_only_trainable_parameters_reach_the_optimizer(minilm_classifier, method_cls) -> None:
    method = method_cls(minilm_classifier.model, head_prefixes=minilm_classifier.head_prefixes)
    method.apply(4 if method_cls is not FullFineTuning else 1)
    optimizer = method.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in method.model.parameters() if p.requires_grad}
    assert in_optimizer == trainable
    assert (
        sum(p.numel() for group in optimizer.param_groups for p in group["params"])
        == method.trainable_count() + method.head_count()
    )


@pytest.mark.parametrize("method_cls", [LoRA, DoRA])
def test_adapter_at_init_gives_the_baselogits(minilm_classifier, sst2_rows, method_cls) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    base = logits(minilm_classifier.model, batch)
    method = method_cls(minilm_classifier.model, head_prefixes=minilm_classifier.head_prefixes)
    method.apply(8)
    assert torch.allclose(logits(method.model, batch), base, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method_cls", [LoRA, DoRA])
def test_merged_export_matches_unmergedlogits(minilm_classifier, sst2_rows, method_cls) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    base = logits(minilm_classifier.model, batch).clone()
    method = method_cls(
        minilm_classifier.model,
        LoraOptions(targets=("q", "k", "v", "up")),
        head_prefixes=minilm_classifier.head_prefixes,
    )
    method.apply(8)
    train_steps(method, batch)
    unmerged = logits(method.model, batch)
    assert not torch.allclose(unmerged, base, atol=1e-4), "training changed nothing; the merge check would be vacuous"
    merged = method.merged_model()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert torch.allclose(logits(merged, batch), unmerged, atol=MERGE_ATOL, rtol=0)
