"""DEFT and the activation-density measure: the loss formula, capture only in training, identity at init, a frozen
backbone and an exact merge after training, the density drop on a short real run, and density with padding excluded
on GELU (exact zeros) and SiLU (threshold), read off an evaluation's own forwards."""

from __future__ import annotations

import pytest
import torch

from core.errors import BenchError
from methods.deft import Deft, DeftOptions, density_loss
from methods.density import DensityMeter, activation_density
from methods.lora import LoRA, LoraOptions
from methods.targets import find_activations
from methods.training import Training
from tasks import get_task
from tasks.generation import generate
from tasks.prompts import encode_text
from tests.conftest import batch_of, logits, train_steps

MERGE_ATOL = 1e-5  # fp32 logits of a merged vs unmerged LoRA base on MiniLM


def _naive_density_loss(layers: list[torch.Tensor], mask: torch.Tensor, epsilon: float) -> float:
    """mean over (layer, sample) of the mean of a²/(a²+ε) over real tokens and units, by plain loops."""
    terms = []
    for a in layers:
        for b in range(a.shape[0]):
            values = [
                float(x) ** 2 / (float(x) ** 2 + epsilon) for t in range(a.shape[1]) if mask[b, t] for x in a[b, t]
            ]
            terms.append(sum(values) / len(values))
    return sum(terms) / len(terms)


def test_density_loss_on_a_hand_computed_example() -> None:
    layer = torch.tensor([[[0.0, 1.0], [2.0, 0.0]], [[1.0, 3.0], [5.0, 5.0]]])  # 2 samples x 2 tokens x 2 units
    mask = torch.tensor([[1, 1], [1, 0]])  # the second sample's last token is padding
    # epsilon 1: a²/(a²+1) is 0, .5, .8, 0 (sample 0: mean .325) and .5, .9 (sample 1: mean .7); a zero layer adds 0, 0
    assert density_loss([layer, torch.zeros_like(layer)], mask, epsilon=1.0).item() == pytest.approx(
        (0.325 + 0.7) / 4, abs=1e-7
    )
    torch.manual_seed(0)
    layers = [torch.randn(3, 4, 5) * 1e-3 for _ in range(2)]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    assert density_loss(layers, mask, 1e-7).item() == pytest.approx(_naive_density_loss(layers, mask, 1e-7), rel=1e-5)


def test_training_step_adds_weighted_density_of_the_captured_activations_only_while_training(
    minilm_classifier, sst2_rows
) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:4], minilm_classifier.tokenizer)
    activations = [module for _, module in find_activations(minilm_classifier.model)]
    seen: list[torch.Tensor] = []
    for module in activations:
        module.register_forward_hook(lambda _m, _i, output: seen.append(output.detach()))
    method = Deft(minilm_classifier.model, DeftOptions(weight=0.5), head_prefixes=minilm_classifier.head_prefixes)
    method.apply(4)
    for module in method.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # so the task loss of the training forward can be recomputed
    method.model.train()
    total = Training(method).training_step(batch, 0)
    assert len(seen) == len(activations) == minilm_classifier.model.config.num_hidden_layers
    expected = 0.5 * _naive_density_loss(seen, batch["attention_mask"], 1e-7)
    with torch.no_grad():
        task_loss = method.model(**batch).loss
    assert total.item() == pytest.approx(task_loss.item() + expected, rel=1e-5)
    assert method.captured == [] and all(len(module._forward_hooks) == 1 for module in activations), (
        "DEFT hooks outlived the training step"
    )


def test_deft_with_lora_starts_as_the_base_model_and_counts_as_lora(minilm_classifier, sst2_rows) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    model = minilm_classifier.model
    model.eval()
    with torch.no_grad():
        base = model(**batch).logits.clone()
    method = Deft(model, DeftOptions(base_options="targets=q,v,up"), head_prefixes=minilm_classifier.head_prefixes)
    reference = LoRA(model, LoraOptions(targets=("q", "v", "up")))
    assert method.knob_name == "rank" and method.count_for_knob(8) == reference.count_for_knob(8)
    method.apply(8)
    assert method.trainable_count() == reference.count_for_knob(8)
    method.model.eval()
    with torch.no_grad():
        assert torch.equal(method.model(**batch).logits, base)
    assert method.describe()["base_choices"]["targets"] == ["q", "v", "up"]


def test_after_training_with_the_density_loss_the_backbone_is_untouched_and_the_merge_matches(
    minilm_classifier, sst2_rows
) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    base = logits(minilm_classifier.model, batch).clone()
    method = Deft(
        minilm_classifier.model,
        DeftOptions(base_options="targets=q,v,up"),
        head_prefixes=minilm_classifier.head_prefixes,
    )
    method.apply(8)
    frozen = {name: p.detach().clone() for name, p in method.model.named_parameters() if not p.requires_grad}
    train_steps(method, batch)
    unmerged = logits(method.model, batch)
    assert not torch.allclose(unmerged, base, atol=1e-4), "training changed nothing; the merge check would be vacuous"
    assert all(torch.equal(p, frozen[name]) for name, p in method.model.named_parameters() if not p.requires_grad)
    merged = method.merged_model()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert torch.allclose(logits(merged, batch), unmerged, atol=MERGE_ATOL, rtol=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"base": "deft"}, "own base"), ({"base": "nope"}, "unknown method"), ({"base_options": "targets"}, "key=value")],
)
def test_bad_options_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(BenchError, match=message):
        Deft.parse_options(options)


def _density_after_training(rows, deft: bool, steps: int = 10) -> float:
    from bench.run.models import load_model

    torch.manual_seed(0)  # the same classification head and dropout masks for both runs
    loaded = load_model("minilm-l6", "sequence-classification", num_labels=2)
    options = LoraOptions(targets=("q", "v"))
    method = (
        Deft(loaded.model, DeftOptions(base_options="targets=q,v"), head_prefixes=loaded.head_prefixes)
        if deft
        else LoRA(loaded.model, options, head_prefixes=loaded.head_prefixes)
    )
    method.apply(8)
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=1e-2)
    training = Training(method)
    method.model.train()
    for step in range(steps):
        optimizer.zero_grad()
        start = 8 * step % 48  # the first 48 rows train, the last 16 measure
        training.training_step(batch_of("glue/sst2", rows[start : start + 8], loaded.tokenizer), step).backward()
        optimizer.step()
    return activation_density(method.model, [batch_of("glue/sst2", rows[-16:], loaded.tokenizer)])["density"]


def test_deft_lowers_measured_density_against_the_same_run_without_it(sst2_rows) -> None:
    densities = {deft: _density_after_training(sst2_rows, deft) for deft in (False, True)}
    print(f"density after 10 steps: lora {densities[False]:.3f} %, deft+lora {densities[True]:.3f} %")
    assert densities[True] < densities[False] - 0.02


def test_density_excludes_padding_and_counts_exact_zeros_on_gelu(minilm_classifier, sst2_rows) -> None:
    model, tokenizer = minilm_classifier.model.eval(), minilm_classifier.tokenizer
    rows = sst2_rows[:4]
    batch = batch_of("glue/sst2", rows, tokenizer)
    mask = batch["attention_mask"].bool()
    assert not mask.all()  # the batch really is padded
    padded = activation_density(model, [batch])
    assert padded["kind"] == "exact_zero" and padded["threshold"] is None and padded["samples"] == 4
    outputs: list[torch.Tensor] = []
    handles = [
        module.register_forward_hook(lambda _m, _i, output: outputs.append(output))
        for _, module in find_activations(model)
    ]
    with torch.no_grad():
        model(**batch)
    for handle in handles:
        handle.remove()
    per_sentence = [
        sum(torch.count_nonzero(a[i][mask[i]]).item() / a[i][mask[i]].numel() for a in outputs) / len(outputs)
        for i in range(len(rows))
    ]
    assert padded["density"] == pytest.approx(100 * sum(per_sentence) / len(rows), rel=1e-12)
    # each sentence alone gives the same density, up to the few activations at GELU's exact-zero edge (x below about
    # -5.5) that round differently when the matrix shapes change
    alone = [activation_density(model, [batch_of("glue/sst2", [row], tokenizer)])["density"] for row in rows]
    assert padded["density"] == pytest.approx(sum(alone) / len(rows), abs=0.01)


def test_density_on_silu_is_thresholded(smollm2, sst2_rows) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:2], smollm2.tokenizer, max_length=16)
    result = activation_density(smollm2.model, [batch], threshold=1e-2)
    assert (
        result["kind"] == "abs_below_threshold"
        and result["threshold"] == 1e-2
        and result["layers"] == smollm2.model.config.num_hidden_layers
    )
    looser = activation_density(smollm2.model, [batch], threshold=1e-1)
    assert 0 < looser["density"] < result["density"] < 100


def test_density_meter_reads_the_evaluations_own_forwards(minilm_classifier, sst2_rows) -> None:
    model, tokenizer = minilm_classifier.model, minilm_classifier.tokenizer
    rows = sst2_rows[:20]
    with DensityMeter(model) as meter:
        get_task("glue/sst2").evaluate(model, tokenizer, rows, batch_size=8, max_length=64)
    measured = meter.result()
    assert measured["samples"] == len(rows)
    # the same sentences in one separate batch: the same density, up to GELU's exact-zero edge (see above)
    alone = activation_density(model, [batch_of("glue/sst2", rows, tokenizer)])
    assert measured["density"] == pytest.approx(alone["density"], abs=0.01)
    model(**batch_of("glue/sst2", rows[:2], tokenizer))  # outside the meter: not counted
    assert meter.samples == len(rows)


def test_density_meter_counts_generation_prefills_not_decoding_steps(smollm2, sst2_rows) -> None:
    prompts = [row["sentence"] for row in sst2_rows[:3]]
    with DensityMeter(smollm2.model) as meter:
        generate(smollm2.model, smollm2.tokenizer, prompts, max_new_tokens=4, batch_size=2)
    measured = meter.result()
    assert measured["samples"] == len(prompts)  # one prefill row per prompt; the decoding steps add none
    ids = [encode_text(prompt, smollm2.tokenizer) for prompt in prompts]
    width = max(map(len, ids))
    batch = {  # the prompts right-padded in one batch: padding is excluded either way
        "input_ids": torch.tensor([row + [0] * (width - len(row)) for row in ids]),
        "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids]),
    }
    assert measured["density"] == pytest.approx(activation_density(smollm2.model, [batch])["density"], abs=0.05)


def test_density_meter_reports_nothing_for_forwards_without_a_mask(minilm_classifier, sst2_rows) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:2], minilm_classifier.tokenizer)
    with DensityMeter(minilm_classifier.model) as meter, torch.no_grad():
        minilm_classifier.model(input_ids=batch["input_ids"])
    assert meter.result() is None
