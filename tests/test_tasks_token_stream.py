"""Training, generation and lm-eval log-likelihood feed the model the same token ids for the same example, on the real
SmolLM2 with its own tokenizer (no BOS by default) and with a LLaMA-style copy of it that adds BOS by default.

The ids are captured where the model receives them (a forward pre-hook), not re-derived: training's are the batch
`collate` builds, generation's its prefill, lm-eval's the inputs its HFLM feeds for every choice."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from bench.run.models import LoadedModel, load_model
from tasks import get_task
from tasks.data_source import DataSource
from tasks.generation import generate
from tasks.instruction import choice_item
from tasks.lm_eval_bridge import score_multiple_choice
from tasks.prompts import BOS_POLICY, adds_bos, build_prompt


@pytest.fixture(scope="module")
def smollm2_model() -> LoadedModel:
    torch.manual_seed(0)
    return load_model("smollm2-135m", "causal-lm")


def fed_ids(model: torch.nn.Module, call) -> list[list[int]]:
    """Every row of `input_ids` the model receives while `call()` runs."""
    seen: list[list[int]] = []

    def record(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        seen.extend(input_ids.tolist())

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        call()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("bos_by_default", [False, True], ids=["smollm2-tokenizer", "llama-style-bos-tokenizer"])
@pytest.mark.parametrize("task_name", ["commonsense/arc-e", "commonsense/boolq"])
def test_training_generation_and_loglikelihood_feed_the_same_ids(smollm2_model, bos_by_default, task_name):
    tokenizer = smollm2_model.tokenizer
    if bos_by_default:
        tokenizer = AutoTokenizer.from_pretrained(smollm2_model.source, add_bos_token=True)
        tokenizer.pad_token = tokenizer.eos_token
    assert (
        tokenizer("Hi")["input_ids"][0] == tokenizer.bos_token_id
        if bos_by_default
        else tokenizer("Hi")["input_ids"][0] != tokenizer.bos_token_id
    )
    assert adds_bos(tokenizer) is bos_by_default
    task = get_task(task_name)
    row = task.load("test", DataSource(), limit=1)[0]
    model = smollm2_model.model

    batch = task.collate([task.encode(row, tokenizer, max_length=1024)], tokenizer)
    training = fed_ids(model, lambda: model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))[0]
    generation = fed_ids(
        model,
        lambda: generate(
            model, tokenizer, [build_prompt(row["instruction"], row["input"])], max_new_tokens=1, batch_size=1
        ),
    )[0]
    item = choice_item(row, task._lead(row))
    loglikelihood = fed_ids(model, lambda: score_multiple_choice(model, tokenizer, {"x": [item]}, batch_size=1))

    assert training[: len(generation)] == generation  # the prompt generation decodes from is the prompt training saw
    # lm-eval feeds context + continuation minus its last token; the gold choice's input is the training text up to
    # its answer's last token (training adds that token and EOS)
    assert training[:-2] in loglikelihood, "lm-eval scored a token stream training never saw"
    assert all(ids[: len(generation)] == generation for ids in loglikelihood)
    assert (training[0] == tokenizer.bos_token_id) is bos_by_default and training.count(tokenizer.bos_token_id) == int(
        bos_by_default
    )
    assert tokenizer.decode(training[len(generation) :]) == f"{row['output']}{tokenizer.eos_token}"


def test_record_states_the_bos_policy():
    assert get_task("commonsense/all").describe(DataSource())["bos"] == BOS_POLICY
