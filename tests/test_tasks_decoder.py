"""Decoder evaluation parts on the real SmolLM2 and real slices: the pinned template and its training encoding,
batched generation equal to one-at-a-time generation, and lm-eval log-likelihood scoring from the in-memory model
(one commonsense task and one GLUE-style task), offline."""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

import pytest
import torch

from bench.run.models import LoadedModel, load_model
from tasks import get_task
from tasks.data_source import DataSource
from tasks.generation import generate
from tasks.instruction import choice_item
from tasks.lm_eval_bridge import score_multiple_choice
from tasks.prompts import TEMPLATE_HASH, build_prompt, encode_for_training, encode_text

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smollm2_model() -> LoadedModel:
    torch.manual_seed(0)
    return load_model("smollm2-135m", "causal-lm")


# LLM-Adapters' generate_prompt (commonsense_evaluate.py), both branches, written out by hand with the indentation its
# f-strings carry: a trailing space after "request." without input, none with input; 16 spaces before each line.
REFERENCE_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n"
    "\n"
    "                ### Instruction:\n"
    "                Is the sky blue?\n"
    "\n"
    "                ### Response:\n"
    "                "
)
REFERENCE_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n"
    "\n"
    "                ### Instruction:\n"
    "                Is the sky blue?\n"
    "\n"
    "                ### Input:\n"
    "                At noon, without clouds.\n"
    "\n"
    "                ### Response:\n"
    "                "
)


def test_template_is_llm_adapters_evaluation_prompt_byte_for_byte():
    assert build_prompt("Is the sky blue?").encode() == REFERENCE_NO_INPUT.encode()
    assert build_prompt("Is the sky blue?", "At noon, without clouds.").encode() == REFERENCE_WITH_INPUT.encode()


def test_training_text_is_prompt_plus_answer_with_prompt_masked(smollm2_model):
    tokenizer = smollm2_model.tokenizer
    row = get_task("commonsense/boolq").load("test", DataSource(), limit=1)[0]
    prompt = build_prompt(row["instruction"])
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]  # SmolLM2's tokenizer adds no BOS
    masked = encode_for_training(prompt, row["output"], tokenizer, max_length=512)
    assert masked["input_ids"][: len(prompt_ids)] == prompt_ids  # byte-identical prompt in training and evaluation
    assert masked["labels"][: len(prompt_ids)] == [-100] * len(prompt_ids)
    assert masked["labels"][len(prompt_ids) :] == masked["input_ids"][len(prompt_ids) :]
    assert masked["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(masked["input_ids"][len(prompt_ids) : -1]) == "the correct answer is false"
    unmasked = encode_for_training(prompt, row["output"], tokenizer, max_length=512, mask_prompt=False)
    assert unmasked["labels"] == unmasked["input_ids"]
    described = get_task("commonsense/all").describe(DataSource())
    assert described["template_sha256"] == TEMPLATE_HASH and described["prompt_masked"] is True
    assert (
        described["train_mix"]["name"] == "offline-commonsense-boolq-arc-obqa"
        and described["train_mix"]["paper_set"] is False
    )


def test_batched_generation_equals_one_at_a_time(smollm2_model):
    source = DataSource()
    rows = get_task("commonsense/all").load("test", source, limit=1)[:4] + [
        get_task(f"arithmetic/{name}").load("test", source, limit=1)[0] for name in ("svamp", "aqua")
    ]
    prompts = [build_prompt(row["instruction"], row["input"]) for row in rows]
    tokenizer = smollm2_model.tokenizer
    assert len({len(tokenizer(p)["input_ids"]) for p in prompts}) == len(
        prompts
    )  # different lengths, so the batch really is padded
    batched = generate(smollm2_model.model, tokenizer, prompts, max_new_tokens=24, batch_size=2)
    single = [
        generate(smollm2_model.model, tokenizer, [prompt], max_new_tokens=24, batch_size=1)[0] for prompt in prompts
    ]
    assert batched == single
    assert all(text.strip() for text in batched)
    # rows end at different steps, so prompts joined a batch that was still decoding
    assert len({len(tokenizer(text)["input_ids"]) for text in batched}) > 1


def _loglik_choice(model: LoadedModel, context: str, choices: list[str]) -> int:
    """The argmax of summed continuation log-probabilities, computed by hand the way lm-eval splits context/continuation,
    over the ids every protocol feeds (`encode_text`; tests/test_tasks_token_stream.py checks lm-eval feeds those)."""
    tokenizer, scores = model.tokenizer, []
    context_ids = encode_text(context, tokenizer)
    for choice in choices:
        whole = encode_text(context + " " + choice, tokenizer)
        positions = range(len(context_ids), len(whole))
        with torch.no_grad():
            logprobs = (
                model.model(torch.tensor([whole])).logits[0, positions.start - 1 : positions.stop - 1].log_softmax(-1)
            )
        scores.append(sum(logprobs[offset, whole[position]].item() for offset, position in enumerate(positions)))
    return max(range(len(choices)), key=scores.__getitem__)


def test_lm_eval_scores_commonsense_and_glue_style_offline(smollm2_model, tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.chdir(
        tmp_path / "cwd"
    )  # lm-eval must write nothing where it runs, nor leave its temporary folder behind
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    tempfile.tempdir = None
    source = DataSource()
    items = {}
    for task_name, limit in (("commonsense/boolq", 3), ("glue-lm/sst2", 3), ("commonsense/siqa", 1)):
        task = get_task(task_name)
        rows = task.load("test", source, limit=limit)
        items[task_name] = [choice_item(row, task.benchmarks[0].answer_lead) for row in rows]
    scored = score_multiple_choice(smollm2_model.model, smollm2_model.tokenizer, items, batch_size=4)
    for name, task_items in items.items():
        expected = [_loglik_choice(smollm2_model, item.context, item.choices) for item in task_items]
        assert scored[name]["choices"] == expected, name
        hits = [float(e == item.gold) for e, item in zip(expected, task_items)]
        assert scored[name]["acc"] == pytest.approx(sum(hits) / len(hits))
        # lm-eval's standard error of a mean: sample standard deviation / sqrt(n), none for a single example
        assert scored[name]["acc_stderr"] == (
            pytest.approx(statistics.stdev(hits) / math.sqrt(len(hits))) if len(hits) > 1 else None
        )
    tempfile.tempdir = None
    assert list((tmp_path / "cwd").iterdir()) == [] and list((tmp_path / "tmp").iterdir()) == []
    assert not list(REPO.glob("**/peftbench_*"))
