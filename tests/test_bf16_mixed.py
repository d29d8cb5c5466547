"""bf16 mixed precision: sparse gradients against a dense autograd reference in the same precision, and every method
training, evaluating and generating under Lightning's bf16-mixed plugin on CPU."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

import bench.run.execute as execute_module
from bench.run.attention import ATTENTION, sdpa_fp32_under_cpu_autocast
from bench.run.config import RunConfig
from bench.run.execute import execute
from bench.run.plan import plan
from methods.row_sft import RowDeltaLinear, RowSftOptions
from methods.smt import BlockSparseLinear, SmtOptions
from tests.conftest import batch_of
from tests.test_row_sft import calibrated as row_sft_calibrated
from tests.test_smt import calibrated as smt_calibrated
from tests.test_smt import dense_block_gradients

# bf16 tolerance: the sparse products and the dense reference multiply the same bf16 operands with fp32 accumulation
# and round once to bf16, so they may differ by the accumulation order: at most one bf16 unit in the last place
# (2^-8 relative) of the largest entry.
BF16_ULP = 2.0**-8
BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def assert_bf16_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == torch.float32  # the fp32 master parameter's gradient
    torch.testing.assert_close(actual, expected, rtol=BF16_ULP, atol=BF16_ULP * expected.abs().max().item())


def assert_computed_in_bf16(actual: torch.Tensor, fp32_reference: torch.Tensor) -> None:
    """Close to the fp32 gradient at bf16's resolution, but not at fp32's: the backward really ran in bf16."""
    error = (actual - fp32_reference).abs().max().item() / fp32_reference.abs().max().item()
    assert 1e-5 < error < 4 * BF16_ULP, error


def test_attention_under_cpu_bf16_autocast_is_computed_in_fp32() -> None:
    """bf16 inputs, as the attention layers' projections give them under autocast: the output is fp32 SDPA's rounded
    to bf16 (not what SDPA computes in bf16), within one bf16 unit of an fp64 reference; outside autocast the function
    is plain SDPA, bit for bit."""
    torch.manual_seed(0)
    query, key, value = (torch.randn(2, 4, 48, 32).bfloat16() for _ in range(3))
    module = nn.Module()  # SDPA reads only the layer's GQA and causal attributes
    module.is_causal = True

    def sdpa(*tensors: torch.Tensor) -> torch.Tensor:  # (batch, length, heads, dim), as the attention layers take it
        return nn.functional.scaled_dot_product_attention(*tensors, is_causal=True).transpose(1, 2)

    exact = sdpa(query.double(), key.double(), value.double())
    with torch.autocast(**BF16):
        ours, _ = sdpa_fp32_under_cpu_autocast(module, query, key, value, None)
        plain_bf16 = sdpa(query, key, value)
    assert ours.dtype == plain_bf16.dtype == torch.bfloat16
    assert torch.equal(ours, sdpa(query.float(), key.float(), value.float()).bfloat16())
    assert not torch.equal(ours, plain_bf16)
    assert (ours.double() - exact).abs().max().item() <= BF16_ULP * exact.abs().max().item()
    outside_autocast, _ = sdpa_fp32_under_cpu_autocast(module, query, key, value, None)
    assert torch.equal(outside_autocast, sdpa(query, key, value))


def test_models_load_with_it_and_fp32_outputs_equal_sdpa(minilm_classifier, sst2_rows) -> None:
    from transformers import AutoModelForSequenceClassification

    model = minilm_classifier.model
    assert model.config._attn_implementation == ATTENTION
    torch.manual_seed(0)
    reference = AutoModelForSequenceClassification.from_pretrained(
        minilm_classifier.source, num_labels=2, attn_implementation="sdpa"
    )
    reference.load_state_dict(model.state_dict())
    batch = batch_of("glue/sst2", sst2_rows[:8], minilm_classifier.tokenizer)
    inputs = {name: value for name, value in batch.items() if name != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reference(**inputs).logits)


def linear_and_input() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(384, 384), torch.randn(4, 40, 384), torch.randn(4, 40, 384)


def backward(layer: nn.Module, x: torch.Tensor, upstream: torch.Tensor, autocast: bool) -> torch.Tensor:
    """The layer's input gradient of sum(layer(x) * upstream), the forward under bf16 autocast or in fp32."""
    x = x.clone().requires_grad_(True)
    with torch.autocast(**BF16, enabled=autocast):
        y = layer(x)
    (y.float() * upstream).sum().backward()
    return x.grad


def test_block_gradients_in_bf16_match_the_dense_bf16_gradient() -> None:
    base, x, upstream = linear_and_input()
    rows, cols = torch.tensor([0, 2, 2, 5]), torch.tensor([1, 1, 0, 7])
    wrapper, dense, dense_fp32 = BlockSparseLinear(copy.deepcopy(base), 48, rows, cols), base, copy.deepcopy(base)
    grad_x = backward(wrapper, x, upstream, autocast=True)
    assert_bf16_close(grad_x, backward(dense, x, upstream, autocast=True))
    backward(dense_fp32, x, upstream, autocast=False)
    blocks = lambda grad: grad.reshape(8, 48, 8, 48)[rows, :, cols, :]  # noqa: E731
    assert_bf16_close(wrapper.blocks.grad, blocks(dense.weight.grad))
    assert_computed_in_bf16(wrapper.blocks.grad, blocks(dense_fp32.weight.grad))


def test_row_gradients_in_bf16_match_the_dense_bf16_gradient() -> None:
    base, x, upstream = linear_and_input()
    rows = torch.tensor([3, 9, 100, 383])
    wrapper, dense, dense_fp32 = RowDeltaLinear(copy.deepcopy(base), rows, "zero", True), base, copy.deepcopy(base)
    grad_x = backward(wrapper, x, upstream, autocast=True)
    assert_bf16_close(grad_x, backward(dense, x, upstream, autocast=True))
    backward(dense_fp32, x, upstream, autocast=False)
    assert_bf16_close(wrapper.delta.grad, dense.weight.grad[rows])
    assert_bf16_close(wrapper.delta_bias.grad, dense.bias.grad[rows])
    assert_computed_in_bf16(wrapper.delta.grad, dense_fp32.weight.grad[rows])


def test_smt_blocks_of_minilm_in_bf16_match_the_dense_bf16_gradient(minilm_classifier, sst2_rows) -> None:
    dense = copy.deepcopy(minilm_classifier.model)
    method = smt_calibrated(minilm_classifier, sst2_rows, SmtOptions(selection="per-matrix"))
    method.apply(36)
    batch = batch_of("glue/sst2", sst2_rows[16:24], minilm_classifier.tokenizer)
    method.model.eval()
    with torch.autocast(**BF16):
        loss = method.model(**batch).loss
    loss.backward()
    with torch.autocast(**BF16):
        expected = dense_block_gradients(dense, method, batch)
    for name, module in method.model.named_modules():
        if isinstance(module, BlockSparseLinear):
            assert_bf16_close(module.blocks.grad, expected[name])


def test_row_sft_rows_of_minilm_in_bf16_match_the_dense_bf16_gradient(minilm_classifier, sst2_rows) -> None:
    dense = copy.deepcopy(minilm_classifier.model)
    method = row_sft_calibrated(minilm_classifier, sst2_rows, RowSftOptions(importance="taylor"))
    method.apply(16)
    batch = batch_of("glue/sst2", sst2_rows[16:24], minilm_classifier.tokenizer)
    for model in (method.model, dense):
        model.eval()
        with torch.autocast(**BF16):
            loss = model(**batch).loss
        loss.backward()
    for name, module in method.model.named_modules():
        if isinstance(module, RowDeltaLinear):
            reference = dense.get_submodule(name)
            assert_bf16_close(module.delta.grad, reference.weight.grad[module.rows])


def autocast_spy(monkeypatch) -> list[torch.dtype | None]:
    """The autocast dtype (None: off) each evaluation of a run saw, curve points included."""
    seen: list[torch.dtype | None] = []
    real = execute_module._evaluator

    def spying(*args, **kwargs):
        evaluate = real(*args, **kwargs)

        def spied(model, examples):
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
            return evaluate(model, examples=examples)

        return spied

    monkeypatch.setattr(execute_module, "_evaluator", spying)
    return seen


SHORT_ENCODER = {
    "task": "glue/sst2",
    "model": "minilm-l6",
    "max_steps": 2,
    "batch_size": 8,
    "train_examples": 16,
    "validation_examples": 8,
    "test_examples": 8,
    "calibration_batches": 2,
    "eval_every": 1,
}


EVERY_METHOD = [("full", None), *((method, "0.5%") for method in ("lora", "dora", "smt", "row-sft", "deft"))]


@pytest.mark.parametrize(("method", "budget"), [*EVERY_METHOD, ("svfit", "2304")])
def test_every_method_trains_and_evaluates_in_bf16_mixed(method, budget, tmp_path, monkeypatch) -> None:
    seen = autocast_spy(monkeypatch)
    options = {"rank_rule": "budget"} if method == "svfit" else {}
    config = RunConfig(method=method, budget=budget, precision="bf16-mixed", options=options, **SHORT_ENCODER)
    record = execute(plan(config), tmp_path, progress=False)
    assert record["status"] == "ok" and record["config"]["precision"] == "bf16-mixed"
    assert all(math.isfinite(value) for value in record["metrics"]["test"].values())
    assert all(math.isfinite(point["loss"]) for point in record["curves"]["train_loss"])
    assert seen == [torch.bfloat16] * 3  # the curve's point at step 1, validation and test


def test_fp32_runs_evaluate_without_autocast_and_precision_is_in_the_run_key(tmp_path, monkeypatch) -> None:
    seen = autocast_spy(monkeypatch)
    config = RunConfig(method="lora", budget="0.5%", **SHORT_ENCODER)
    execute(plan(config), tmp_path, progress=False)
    assert seen == [None] * 3
    assert plan(config).key != plan(dataclasses.replace(config, precision="bf16-mixed")).key


def test_decoder_generation_runs_in_bf16_mixed(tmp_path, monkeypatch) -> None:
    seen = autocast_spy(monkeypatch)
    config = RunConfig(
        method="smt",
        task="arithmetic/all",
        model="smollm2-135m",
        budget="0.2%",
        precision="bf16-mixed",
        max_steps=2,
        batch_size=2,
        max_length=96,
        train_examples=4,
        validation_examples=1,
        test_examples=1,
        calibration_batches=1,
    )
    run = plan(config)
    run.task = dataclasses.replace(run.task, max_new_tokens=6)  # few new tokens: CPU generation is slow
    record = execute(run, tmp_path, progress=False)
    assert record["status"] == "ok" and seen == [torch.bfloat16] * 2
    assert math.isfinite(record["metrics"]["test"]["average"])
