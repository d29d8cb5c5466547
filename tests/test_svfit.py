"""SVFit: rank rules and counts, the unreachable ceiling, identity at init, gradient fidelity, merge, SVD cache."""

from __future__ import annotations

import pytest
import torch

from core.errors import BenchError
from methods.svfit import SingularValueLinear, SVFit, SvfitOptions, single_thread
from methods.targets import ROLES, find_linears
from tests.conftest import batch_of, logits


def _calibrated(loaded, options: SvfitOptions | None = None, cache_dir=None) -> SVFit:
    method = SVFit(loaded.model, options, head_prefixes=loaded.head_prefixes)
    method.calibrate([], cache_dir, {"model": loaded.fingerprint})
    return method


def test_budget_rule_counts_top_r_per_matrix_and_refuses_budgets_above_the_ceiling(minilm_classifier) -> None:
    config = minilm_classifier.model.config
    matrices, d = 2 * config.num_hidden_layers, config.hidden_size  # q and v, d x d each
    method = _calibrated(minilm_classifier, SvfitOptions(rank_rule="budget"))
    assert method.knob_bounds() == (1, d)
    assert [method.count_for_knob(r) for r in (1, 7, d, d + 5)] == [matrices, 7 * matrices, d * matrices, d * matrices]
    assert method.solve_budget(100 * matrices) == 100
    with pytest.raises(BenchError, match=f"between {matrices:,} and {d * matrices:,}"):
        method.solve_budget(d * matrices + 1)
    method.apply(100)
    assert method.trainable_count() == 100 * matrices


def test_energy_rule_keeps_99_percent_of_sigma_squared_per_matrix(minilm_classifier) -> None:
    expected = {}
    for name, module in find_linears(minilm_classifier.model, ("q", "v")):
        with single_thread():
            sigma = torch.linalg.svdvals(module.weight.detach().double())
        energy = sigma**2 / (sigma**2).sum()
        expected[name] = next(k for k in range(1, len(sigma) + 1) if energy[:k].sum() >= 0.99)
    method = _calibrated(minilm_classifier)
    low, high = method.knob_bounds()
    assert low == high == max(expected.values())
    assert method.count_for_knob(low) == sum(expected.values())
    assert method.solve_budget(sum(expected.values())) == low
    with pytest.raises(BenchError, match="rank_rule=budget"):
        method.solve_budget(sum(expected.values()) + 1)
    method.apply(low)
    assert method.trainable_count() == sum(expected.values())
    assert method.describe()["ranks"] == expected
    assert all(rank < 384 for rank in expected.values()), "the 99 % rule should truncate some MiniLM matrices"


def test_bad_options_are_refused() -> None:
    with pytest.raises(BenchError, match="rank_rule"):
        SVFit.parse_options({"rank_rule": "fixed"})
    with pytest.raises(BenchError, match="energy"):
        SVFit.parse_options({"energy": "1.5"})


def test_decoder_default_targets_every_linear_role(smollm2) -> None:
    method = SVFit(smollm2.model, SvfitOptions(rank_rule="budget"))
    assert method.roles == ROLES
    config = smollm2.model.config
    kv = config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
    per_layer = (
        5 * min(config.hidden_size, config.intermediate_size) + 2 * kv
    )  # q, o, gate, up, down full; k, v are kv-wide
    assert method.count_for_knob(10_000) == config.num_hidden_layers * per_layer


def test_model_is_unchanged_at_init(minilm_classifier, sst2_rows) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    base = logits(minilm_classifier.model, batch).clone()
    method = _calibrated(minilm_classifier)
    method.apply(method.knob_bounds()[0])
    assert torch.equal(logits(method.model, batch), base)


def test_gradient_of_each_singular_value_is_the_dense_gradient_projected_on_its_direction(
    minilm_classifier, sst2_rows
) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    model = minilm_classifier.model
    model.train()
    torch.manual_seed(0)
    model.zero_grad()
    model(**batch).loss.backward()
    dense = {name: module.weight.grad.clone() for name, module in find_linears(model, ("q", "v"))}
    method = _calibrated(minilm_classifier, SvfitOptions(rank_rule="budget"))
    method.apply(384)
    torch.manual_seed(0)
    method.model(**batch).loss.backward()
    wrapped = {name: module for name, module in method.model.named_modules() if isinstance(module, SingularValueLinear)}
    assert wrapped.keys() == dense.keys()
    for name, module in wrapped.items():
        with single_thread():  # an SVD of the untouched base weight, independent of the module's buffers
            u, _, vh = torch.linalg.svd(module.base.weight.detach().float(), full_matrices=False)
        projected = ((u.T @ dense[name]) * vh).sum(1)  # u_i^T G v_i
        scale = projected.abs().max()
        assert scale > 0
        assert torch.allclose(module.delta.grad, projected, atol=1e-4 * scale, rtol=1e-3), name


@pytest.mark.parametrize(
    ("name", "rank", "side"),
    [
        ("bert.encoder.layer.0.intermediate.dense", 300, "in"),  # 384 -> 1536: the input-side basis V_r
        ("bert.encoder.layer.0.output.dense", 300, "out"),  # 1536 -> 384: the output-side basis U_r
        ("bert.encoder.layer.1.attention.self.value", 384, "both"),  # full rank, sigma_1/sigma_r ~ 1e4: both bases
    ],
)
def test_each_form_is_identity_at_init_projects_the_dense_gradient_and_merges_to_the_svd_update(
    minilm_classifier, name, rank, side
) -> None:
    base = minilm_classifier.model.get_submodule(name)
    with single_thread():
        u, sigma, vh = torch.linalg.svd(base.weight.detach().float(), full_matrices=False)
    u, sigma, vh = u[:, :rank], sigma[:rank], vh[:rank]
    module = SingularValueLinear(base, u, sigma, vh)
    assert module.side == side
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, base.in_features, generator=generator)
    g = torch.randn(2, 5, base.out_features, generator=generator)
    with torch.no_grad():
        assert torch.equal(module(x), base(x))
    (module(x) * g).sum().backward()
    dense = g.flatten(0, 1).T @ x.flatten(0, 1)  # dL/dW of the plain layer
    projected = ((u.T @ dense) * vh).sum(1)
    assert torch.allclose(module.delta.grad, projected, atol=1e-4 * projected.abs().max(), rtol=1e-3)
    with torch.no_grad():
        module.delta.add_(0.1 * sigma * torch.randn(rank, generator=generator))
        expected = (u * (module.s - sigma)) @ vh  # U_r diag(s - sigma) V_r^T
        assert torch.allclose(module.delta_weight(), expected, atol=1e-5 * expected.abs().max(), rtol=0)
        moved = module(x)
        assert torch.allclose(moved, base(x) + x @ expected.T, atol=1e-5 * moved.abs().max(), rtol=0)


def test_merged_export_is_plain_linear_and_matches_the_trainedlogits(minilm_classifier, sst2_rows) -> None:
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    base = logits(minilm_classifier.model, batch).clone()
    method = _calibrated(minilm_classifier, SvfitOptions(rank_rule="budget"))
    method.apply(64)
    optimizer = torch.optim.AdamW(method.trainable_parameters(), lr=1e-2)
    method.model.train()
    for _ in range(3):
        optimizer.zero_grad()
        method.model(**batch).loss.backward()
        optimizer.step()
    trained = logits(method.model, batch)
    assert not torch.allclose(trained, base, atol=1e-4), "training changed nothing; the merge check would be vacuous"
    merged = method.merged_model()
    assert not any(isinstance(module, SingularValueLinear) for module in merged.modules())
    assert {type(module) for _, module in find_linears(merged, ("q", "v"))} == {torch.nn.Linear}
    assert not any(name.endswith((".u", ".vh", ".sigma")) for name, _ in merged.named_buffers())
    assert torch.allclose(logits(merged, batch), trained, atol=1e-5, rtol=0)


def test_svd_is_cached_reused_across_budgets_and_sliced_without_keeping_the_full_factors(
    minilm_classifier, tmp_path
) -> None:
    first = _calibrated(minilm_classifier, SvfitOptions(rank_rule="budget"), tmp_path)
    second = _calibrated(minilm_classifier, SvfitOptions(rank_rule="budget"), tmp_path)
    assert not first.calibration_info["loaded_from_cache"] and second.calibration_info["loaded_from_cache"]
    assert len(list(tmp_path.glob("svfit-*.safetensors"))) == 1
    for a, b in zip(first.spectra, second.spectra):
        assert torch.equal(a, b)
    second.apply(100)  # the cached factors load row-major, where a top-r row slice is a view of the full matrix
    kept = [
        buffer
        for module in second.model.modules()
        if isinstance(module, SingularValueLinear)
        for buffer in module.buffers(recurse=False)
    ]
    assert all(buffer.untyped_storage().nbytes() == buffer.numel() * buffer.element_size() for buffer in kept), (
        "buffers must hold only the kept singular vectors"
    )
