"""row-SFT: row gradients against the dense gradient, identity at init, frozen rows, merge, counts, importance, cache."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from core.errors import BenchError
from core.files import CACHE_ENV
from methods.base import OptimConfig
from methods.row_sft import RowDeltaLinear, RowSFT, RowSftOptions
from tests.conftest import batch_of, logits, recorded_run, train_steps
from tests.test_smt import calibration_batches

GRAD_ATOL = 1e-6  # fp32: delta gradients vs the same rows of the dense weight (and bias) gradient
MERGE_ATOL = 1e-6  # fp32 logits, merged vs unmerged (the merged weight holds the very same values)


def calibrated(
    loaded, rows: list[dict], options: RowSftOptions | None = None, cache_dir=None, lr: float = RowSFT.default_lr
) -> RowSFT:
    method = RowSFT(loaded.model, options, OptimConfig(lr=lr), head_prefixes=loaded.head_prefixes)
    method.calibrate(calibration_batches(loaded, rows), cache_dir, {"model": loaded.fingerprint})
    return method


def assert_row_gradients_match(method: RowSFT, dense: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
    """Backpropagate `batch` through both models; each delta's gradient must equal the dense gradient's rows."""
    method.model.eval()
    method.model(**batch).loss.backward()
    dense.requires_grad_(False)
    for name in method.layers:
        dense.get_submodule(name).requires_grad_(True)
    dense.eval()
    dense(**batch).loss.backward()
    wrappers = [(name, m) for name, m in method.model.named_modules() if isinstance(m, RowDeltaLinear)]
    assert len(wrappers) == len(method.layers)
    for name, module in wrappers:
        reference = dense.get_submodule(name)
        assert module.base.weight.grad is None
        torch.testing.assert_close(module.delta.grad, reference.weight.grad[module.rows], atol=GRAD_ATOL, rtol=0)
        if module.delta_bias is not None:
            torch.testing.assert_close(module.delta_bias.grad, reference.bias.grad[module.rows], atol=GRAD_ATOL, rtol=0)


def test_row_gradients_equal_the_dense_gradient_rows(minilm_classifier, sst2_rows) -> None:
    dense = copy.deepcopy(minilm_classifier.model)
    method = calibrated(minilm_classifier, sst2_rows, RowSftOptions(importance="taylor"))
    method.apply(16)
    assert_row_gradients_match(method, dense, batch_of("glue/sst2", sst2_rows[16:24], minilm_classifier.tokenizer))


def test_smollm2_every_linear_role_and_gradients(smollm2) -> None:
    tokenizer = smollm2.tokenizer
    batch = tokenizer(
        ["The movie was a delight from start to finish.", "A dull, lifeless script."], return_tensors="pt", padding=True
    )
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    config = smollm2.model.config
    dense = copy.deepcopy(smollm2.model)
    method = RowSFT(smollm2.model, RowSftOptions(importance="l2"))
    method.calibrate([], None, {})
    d, ff = config.hidden_size, config.intermediate_size
    assert method.describe()["targets"] == ["down", "gate", "k", "o", "q", "up", "v"]
    assert method.knob_bounds() == (
        1,
        config.num_key_value_heads * d // config.num_attention_heads,
    )  # k/v have the fewest rows
    assert method.count_for_knob(4) == 4 * config.num_hidden_layers * (6 * d + ff)  # no biases: r·d_in per layer
    method.apply(4)
    assert_row_gradients_match(method, dense, batch)


def test_two_dimensional_inputs_and_identity_at_init(minilm_classifier, sst2_rows) -> None:
    linear = minilm_classifier.model.bert.encoder.layer[0].intermediate.dense
    wrapper = RowDeltaLinear(copy.deepcopy(linear), torch.tensor([3, 70, 900]), "zero", train_bias=True)
    x = torch.randn(40, 384)
    assert torch.equal(wrapper(x), linear(x))
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    pristine = copy.deepcopy(minilm_classifier.model)
    base = logits(minilm_classifier.model, batch).clone()
    method = calibrated(minilm_classifier, sst2_rows, RowSftOptions(importance="l2"))
    method.apply(8)
    assert torch.equal(logits(method.model, batch), base)
    kaiming = RowSFT(
        pristine, RowSftOptions(importance="l2", init="kaiming"), head_prefixes=minilm_classifier.head_prefixes
    )
    kaiming.calibrate([], None, {})
    kaiming.apply(8)
    assert not torch.allclose(logits(kaiming.model, batch), base, atol=1e-4), (
        "the reference init changes the model at step 0"
    )
    assert kaiming.describe()["init"].startswith("kaiming")


def test_training_moves_only_the_selected_rows_and_the_merge_matches(minilm_classifier, sst2_rows) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    base_model = copy.deepcopy(minilm_classifier.model)
    base_logits = logits(base_model, batch)
    method = calibrated(minilm_classifier, sst2_rows, lr=1e-3)
    method.apply(8)
    train_steps(method, batch)
    unmerged = logits(method.model, batch)
    assert not torch.allclose(unmerged, base_logits, atol=1e-4), (
        "training changed nothing; the checks below would be vacuous"
    )
    merged = method.merged_model()
    assert not any(isinstance(m, RowDeltaLinear) for m in merged.modules())
    for name, module in method.model.named_modules():
        if isinstance(module, RowDeltaLinear):
            after, before = merged.get_submodule(name), base_model.get_submodule(name)
            frozen = torch.ones(after.out_features, dtype=torch.bool)
            frozen[module.rows] = False
            assert torch.equal(after.weight[frozen], before.weight[frozen]) and torch.equal(
                after.bias[frozen], before.bias[frozen]
            )
            assert not torch.equal(after.weight[~frozen], before.weight[~frozen])
    torch.testing.assert_close(logits(merged, batch), unmerged, atol=MERGE_ATOL, rtol=0)
    assert torch.equal(logits(method.model, batch), unmerged), "merging must leave the training model as it was"


def test_counts_bounds_and_budget_solving(minilm_classifier, sst2_rows) -> None:
    method = RowSFT(minilm_classifier.model, head_prefixes=minilm_classifier.head_prefixes)
    per_row = 6 * (
        5 * 384 + 1536 + 5
    )  # 6 layers: q, k, v, o, up take 384 inputs, down 1536; a bias on all but k (zero gradient)
    assert method.knob_bounds() == (1, 384)
    assert [method.count_for_knob(r) for r in (1, 8, 384)] == [per_row, 8 * per_row, 384 * per_row]
    assert RowSFT(minilm_classifier.model, RowSftOptions(train_bias=False)).count_for_knob(8) == 8 * 6 * (
        5 * 384 + 1536
    )
    assert (
        method.solve_budget(8 * per_row + per_row // 2 - 1) == 8
        and method.solve_budget(8 * per_row + per_row // 2 + 1) == 9
    )
    with pytest.raises(BenchError, match=re.escape("rows 1..384")):
        method.solve_budget(384 * per_row + 1)
    with pytest.raises(BenchError, match="l2, taylor, zo-taylor"):
        RowSFT.parse_options({"importance": "wanda"})
    ranked = calibrated(minilm_classifier, sst2_rows, RowSftOptions(importance="l2", ranking="global"))
    low, high = ranked.knob_bounds()
    assert (low, high) == (1, (5 * 384 + 1536) // 6)
    for r in (1, 8, high):
        chosen = ranked.select(r)
        assert sum(len(rows) for rows in chosen.values()) == 6 * 6 * r
        assert ranked.count_for_knob(r) == sum(
            len(rows) * (ranked.layers[name].in_features + (".key" not in name)) for name, rows in chosen.items()
        )
    ranked.apply(8)
    assert ranked.trainable_count() == ranked.count_for_knob(8)


def test_only_the_deltas_and_the_head_reach_the_optimizer(minilm_classifier, sst2_rows) -> None:
    method = calibrated(minilm_classifier, sst2_rows, RowSftOptions(importance="l2"))
    method.apply(4)
    optimizer = method.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    deltas = {
        id(p)
        for m in method.model.modules()
        if isinstance(m, RowDeltaLinear)
        for p in (m.delta, m.delta_bias)
        if p is not None
    }
    head = {id(p) for n, p in method.model.named_parameters() if n.startswith(minilm_classifier.head_prefixes)}
    assert in_optimizer == deltas | head
    assert sum(p.numel() for p in method.trainable_parameters()) == method.count_for_knob(4) + method.head_count()
    assert all(
        key.endswith((".delta", ".delta_bias", ".rows")) or key.startswith("classifier.")
        for key in method.export_state()
    )


def test_zo_taylor_is_seeded_and_cached_across_budgets(minilm_classifier, sst2_rows, tmp_path) -> None:
    pristine = copy.deepcopy(minilm_classifier.model)
    first = calibrated(minilm_classifier, sst2_rows, cache_dir=tmp_path)
    assert first.calibration_info["loaded_from_cache"] is False and first.options.importance == "zo-taylor"
    second = RowSFT(pristine, head_prefixes=minilm_classifier.head_prefixes)
    second.compute_calibration = lambda batches: pytest.fail("the second calibration should come from the cache")
    second.calibrate(
        calibration_batches(minilm_classifier, sst2_rows), tmp_path, {"model": minilm_classifier.fingerprint}
    )
    assert second.calibration_info["loaded_from_cache"] is True
    small, large = first.select(4), second.select(32)
    assert all(torch.equal(second.select(4)[name], rows) for name, rows in small.items())
    assert all(set(rows.tolist()) <= set(large[name].tolist()) for name, rows in small.items()), (
        "top-4 rows must be inside top-32"
    )
    batches = calibration_batches(minilm_classifier, sst2_rows)
    again = RowSFT(pristine).compute_calibration(batches)
    other_seed = RowSFT(pristine, RowSftOptions(zo_seed=1)).compute_calibration(batches)
    assert all(torch.equal(again[name], first.scores[name]) for name in first.scores), "same seed, same scores"
    assert any(not torch.equal(other_seed[name], first.scores[name]) for name in first.scores)
    l2 = RowSFT(pristine, RowSftOptions(importance="l2")).compute_calibration([])
    assert all(torch.allclose(score.mean(), torch.tensor(1.0)) for score in l2.values()), (
        "scores are normalised by their layer mean"
    )
    assert RowSFT(pristine, RowSftOptions(ranking="global")).calibration_settings() == first.calibration_settings()


def test_bench_run_records_the_analytic_count(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    record = recorded_run("row-sft", tmp_path / "out")
    rows = record["method"]["knob"]["value"]
    assert record["params"]["achieved"] == rows * 6 * (5 * 384 + 1536 + 5)  # a bias delta on every role but k
    assert (
        record["method"]["choices"]["importance"] == "zo-taylor"
        and record["method"]["calibration"]["loaded_from_cache"] is False
    )
