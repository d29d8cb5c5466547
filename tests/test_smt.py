"""SMT: block gradients against the dense gradient, identity at init, frozen entries, merge, counts, calibration cache."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from core.errors import BenchError
from core.files import CACHE_ENV
from methods.base import OptimConfig
from methods.smt import SMT, BlockSparseLinear, SmtOptions
from tests.conftest import batch_of, logits, recorded_run, train_steps

GRAD_ATOL = 1e-6  # fp32: block gradients vs the same blocks of the dense weight gradient
MERGE_ATOL = 1e-6  # fp32 logits, merged vs unmerged (the merged weight holds the very same values)


def calibration_batches(loaded, rows: list[dict], count: int = 2, size: int = 8) -> list[dict[str, torch.Tensor]]:
    return [batch_of("glue/sst2", rows[i * size : (i + 1) * size], loaded.tokenizer) for i in range(count)]


def calibrated(
    loaded, rows: list[dict], options: SmtOptions | None = None, cache_dir=None, lr: float | None = None
) -> SMT:
    method = SMT(loaded.model, options, OptimConfig(lr=lr or SMT.default_lr), head_prefixes=loaded.head_prefixes)
    method.calibrate(calibration_batches(loaded, rows), cache_dir, {"model": loaded.fingerprint})
    return method


def dense_block_gradients(
    model: torch.nn.Module, method: SMT, batch: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The naive reference: the dense weight gradient of every selected matrix, cut at the selected blocks."""
    model.requires_grad_(False)
    wrappers = {name: module for name, module in method.model.named_modules() if isinstance(module, BlockSparseLinear)}
    for name in wrappers:
        model.get_submodule(name).weight.requires_grad_(True)
    model.eval()
    model(**batch).loss.backward()
    b = method.block_size
    return {
        name: model.get_submodule(name).weight.grad.reshape(w.base.out_features // b, b, w.base.in_features // b, b)[
            w.block_rows, :, w.block_cols, :
        ]
        for name, w in wrappers.items()
    }


def test_block_gradients_equal_the_dense_gradient_blocks(minilm_classifier, sst2_rows) -> None:
    dense = copy.deepcopy(minilm_classifier.model)
    method = calibrated(minilm_classifier, sst2_rows, SmtOptions(selection="per-matrix"))
    method.apply(36)  # 2 blocks in each of the 18 q/k/v matrices: several matrices, rows and columns
    batch = batch_of("glue/sst2", sst2_rows[16:24], minilm_classifier.tokenizer)
    method.model.eval()
    method.model(**batch).loss.backward()
    expected = dense_block_gradients(dense, method, batch)
    assert len(expected) == 18
    for name, module in method.model.named_modules():
        if isinstance(module, BlockSparseLinear):
            assert module.base.weight.grad is None
            torch.testing.assert_close(module.blocks.grad, expected[name], atol=GRAD_ATOL, rtol=0)


def test_two_dimensional_inputs_get_the_same_gradients(minilm_classifier) -> None:
    linear = minilm_classifier.model.bert.encoder.layer[0].attention.self.value
    dense = copy.deepcopy(linear)
    wrapper = BlockSparseLinear(linear, 128, torch.tensor([0, 2, 2]), torch.tensor([1, 1, 0]))
    x = torch.randn(40, 384)
    assert torch.equal(wrapper(x), dense(x))
    upstream = torch.randn(40, 384)
    (wrapper(x) * upstream).sum().backward()
    (dense(x) * upstream).sum().backward()
    reference = dense.weight.grad.reshape(3, 128, 3, 128)[torch.tensor([0, 2, 2]), :, torch.tensor([1, 1, 0]), :]
    torch.testing.assert_close(wrapper.blocks.grad, reference, atol=GRAD_ATOL, rtol=0)


def test_model_equals_the_base_at_init(minilm_classifier, sst2_rows) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    base = logits(minilm_classifier.model, batch).clone()
    method = calibrated(minilm_classifier, sst2_rows)
    method.apply(20)
    assert torch.equal(logits(method.model, batch), base)


def test_training_moves_only_the_selected_blocks_and_the_merge_matches(minilm_classifier, sst2_rows) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    base_model = copy.deepcopy(minilm_classifier.model)
    base_logits = logits(base_model, batch)
    method = calibrated(minilm_classifier, sst2_rows, SmtOptions(mlp_share=0.5), lr=1e-3)
    method.apply(12)
    train_steps(method, batch)
    unmerged = logits(method.model, batch)
    assert not torch.allclose(unmerged, base_logits, atol=1e-4), (
        "training changed nothing; the checks below would be vacuous"
    )
    merged = method.merged_model()
    assert not any(isinstance(m, BlockSparseLinear) for m in merged.modules())
    b, touched = method.block_size, set()
    for name, module in method.model.named_modules():
        if isinstance(module, BlockSparseLinear):
            touched.add(name)
            after, before = merged.get_submodule(name).weight, base_model.get_submodule(name).weight
            selected = torch.zeros(after.shape[0] // b, after.shape[1] // b, dtype=torch.bool)
            selected[module.block_rows, module.block_cols] = True
            mask = selected.repeat_interleave(b, 0).repeat_interleave(b, 1)
            assert torch.equal(after[~mask], before[~mask])
            assert not torch.equal(after[mask], before[mask])
    for name in set(method.candidates) - touched:
        assert torch.equal(merged.get_submodule(name).weight, base_model.get_submodule(name).weight)
    assert set(method.describe()["blocks_per_role"]) & {"up", "down"}, "mlp_share=0.5 should place blocks in the MLP"
    torch.testing.assert_close(logits(merged, batch), unmerged, atol=MERGE_ATOL, rtol=0)
    assert torch.equal(logits(method.model, batch), unmerged), "merging must leave the training model as it was"


def test_counts_bounds_and_budget_solving(minilm_classifier) -> None:
    method = SMT(minilm_classifier.model, head_prefixes=minilm_classifier.head_prefixes)
    b = 384 // 16  # the paper's block-to-width ratio, 256 / 4096
    blocks = 6 * 3 * (384 // b) ** 2  # 6 layers x q, k, v x 16x16 blocks of 24
    assert method.block_size == b and method.knob_bounds() == (1, blocks)
    assert [method.count_for_knob(n) for n in (1, 7, blocks)] == [b**2, 7 * b**2, blocks * b**2]
    assert method.solve_budget(7 * b**2 + 288) == 7 and method.solve_budget(7 * b**2 + 289) == 8
    with pytest.raises(BenchError, match=re.escape(f"blocks 1..{blocks}")):
        method.solve_budget(blocks * b**2 + 1)
    assert SMT(minilm_classifier.model, SmtOptions(mlp_share=1.0)).knob_bounds() == (
        1,
        6 * 2 * 64 * 16,
    )  # up and down: 64x16 / 16x64 blocks
    assert SMT(minilm_classifier.model, SmtOptions(block_size=128)).knob_bounds() == (1, 6 * 3 * 9)
    assert SMT(minilm_classifier.model, SmtOptions(selection="per-matrix")).knob_bounds() == (1, blocks)
    with pytest.raises(BenchError, match="does not divide"):
        _ = SMT(minilm_classifier.model, SmtOptions(block_size=256)).block_size
    with pytest.raises(BenchError, match="abs_mean, mean_abs"):
        SMT.parse_options({"score": "max"})


def test_smollm2_block_size_and_gradients(smollm2) -> None:
    tokenizer = smollm2.tokenizer
    batch = tokenizer(
        ["The movie was a delight from start to finish.", "A dull, lifeless script."], return_tensors="pt", padding=True
    )
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    dense = copy.deepcopy(smollm2.model)
    method = SMT(smollm2.model)
    assert method.block_size == 32  # at most 576 / 16 = 36, dividing the 192-wide k and v
    method.calibrate([batch], None, {})
    method.apply(40)
    assert method.trainable_count() == 40 * 32**2
    method.model.eval()
    method.model(**batch).loss.backward()
    expected = dense_block_gradients(dense, method, batch)
    for name, module in method.model.named_modules():
        if isinstance(module, BlockSparseLinear):
            torch.testing.assert_close(module.blocks.grad, expected[name], atol=GRAD_ATOL, rtol=0)


def test_only_the_blocks_and_the_head_reach_the_optimizer(minilm_classifier, sst2_rows) -> None:
    method = calibrated(minilm_classifier, sst2_rows)
    method.apply(10)
    optimizer = method.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    blocks = {id(m.blocks) for m in method.model.modules() if isinstance(m, BlockSparseLinear)}
    head = {id(p) for n, p in method.model.named_parameters() if n.startswith(minilm_classifier.head_prefixes)}
    assert in_optimizer == blocks | head
    assert (
        sum(p.numel() for group in optimizer.param_groups for p in group["params"])
        == 10 * method.block_size**2 + method.head_count()
    )
    state = method.export_state()
    for name, module in method.model.named_modules():
        if isinstance(module, BlockSparseLinear):
            assert torch.equal(state[f"{name}.block_rows"], module.block_rows.int()) and torch.equal(
                state[f"{name}.block_cols"], module.block_cols.int()
            )
    assert sum(v.numel() for k, v in state.items() if k.endswith(".blocks")) == 10 * method.block_size**2


def test_calibration_is_cached_and_reused_across_budgets(minilm_classifier, sst2_rows, tmp_path) -> None:
    pristine = copy.deepcopy(minilm_classifier.model)
    first = calibrated(minilm_classifier, sst2_rows, cache_dir=tmp_path)
    assert first.calibration_info["loaded_from_cache"] is False
    second = SMT(pristine, head_prefixes=minilm_classifier.head_prefixes)
    second.compute_calibration = lambda batches: pytest.fail("the second calibration should come from the cache")
    second.calibrate(
        calibration_batches(minilm_classifier, sst2_rows), tmp_path, {"model": minilm_classifier.fingerprint}
    )
    assert (
        second.calibration_info["loaded_from_cache"] is True
        and second.calibration_info["key"] == first.calibration_info["key"]
    )
    small, large = first.select(5), second.select(30)
    assert {n: i.tolist() for n, i in second.select(5).items()} == {n: i.tolist() for n, i in small.items()}
    assert all(set(indices.tolist()) <= set(large[name].tolist()) for name, indices in small.items()), (
        "top-5 must be inside top-30"
    )
    assert SMT(pristine, SmtOptions(score="mean_abs")).calibration_settings() != first.calibration_settings()
    assert SMT(pristine, SmtOptions(selection="per-matrix")).calibration_settings() == first.calibration_settings()


def block_set(chosen: dict[str, torch.Tensor]) -> set[tuple[str, int]]:
    return {(name, int(index)) for name, indices in chosen.items() for index in indices}


def test_score_variants_rank_blocks_differently(minilm_classifier, sst2_rows) -> None:
    pristine = copy.deepcopy(minilm_classifier.model)
    abs_mean = calibrated(minilm_classifier, sst2_rows, SmtOptions(score="abs_mean"))
    mean_abs = SMT(pristine, SmtOptions(score="mean_abs"), head_prefixes=minilm_classifier.head_prefixes)
    mean_abs.calibrate(calibration_batches(minilm_classifier, sst2_rows), None, {})
    assert block_set(abs_mean.select(20)) != block_set(mean_abs.select(20))
    assert all(torch.all(abs_mean.scores[n] >= mean_abs.scores[n]) for n in abs_mean.scores), (
        "|mean g| <= mean |g| on every block"
    )


def test_full_warmup_moves_the_weights_and_caches_them(minilm_classifier, sst2_rows, tmp_path) -> None:
    pristine = copy.deepcopy(minilm_classifier.model)
    method = calibrated(minilm_classifier, sst2_rows, SmtOptions(warmup="full", warmup_lr=1e-4), cache_dir=tmp_path)
    name = "bert.encoder.layer.0.output.dense.weight"  # not a candidate: only a full warm-up moves it
    warmed = dict(method.model.named_parameters())[name].detach().clone()
    assert not torch.equal(warmed, dict(pristine.named_parameters())[name])
    again = SMT(pristine, SmtOptions(warmup="full", warmup_lr=1e-4), head_prefixes=minilm_classifier.head_prefixes)
    again.calibrate([], tmp_path, {"model": minilm_classifier.fingerprint})
    assert again.calibration_info["loaded_from_cache"] is True
    assert torch.equal(dict(pristine.named_parameters())[name], warmed)
    assert again.describe()["warmup"] == "full"


def test_bench_run_records_the_analytic_count(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    record = recorded_run("smt", tmp_path / "out")
    blocks = record["method"]["knob"]["value"]
    assert record["params"]["achieved"] == blocks * 24**2 and blocks == round(record["params"]["requested"] / 24**2)
    assert (
        record["method"]["choices"]["block_size"] == 24
        and record["method"]["calibration"]["loaded_from_cache"] is False
    )
    assert record["cost"]["adapter_bytes"] >= 4 * (record["params"]["achieved"] + record["params"]["head"])
