"""The one pinned instruction template of the decoder tasks, its hash, and the training encoding.

LLM-Adapters' Alpaca-style template, written once: the training text is exactly `prompt + output + eos`, and
evaluation (generation and lm-eval) uses the byte-identical `prompt`. LLM-Adapters' own training and evaluation
strings differ in whitespace (indentation, trailing spaces); here there is nothing to differ. The sha256 of the
template (`TEMPLATE_HASH`) is stored with every result.

Prompt tokens are masked out of the loss (labels -100) by default; `mask_prompt=False` trains on the whole text
as LLM-Adapters does (`train_on_inputs=True`). The flag is recorded with the template hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
TEMPLATE = PREAMBLE + "\n\n### Instruction:\n{instruction}\n\n### Response:\n"
TEMPLATE_WITH_INPUT = PREAMBLE + "\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
TEMPLATE_HASH = hashlib.sha256((TEMPLATE + "\0" + TEMPLATE_WITH_INPUT).encode()).hexdigest()


def build_prompt(instruction: str, input_text: str = "") -> str:
    """The prompt of one example, ending right where the response starts."""
    if input_text:
        return TEMPLATE_WITH_INPUT.format(instruction=instruction, input=input_text)
    return TEMPLATE.format(instruction=instruction)


def encode_for_training(prompt: str, output: str, tokenizer: Any, max_length: int, mask_prompt: bool = True) -> dict[str, list[int]]:
    """Token ids of `prompt + output + eos`; labels are -100 on the prompt when `mask_prompt`.

    Prompt and output are tokenized separately and concatenated, so the prompt ids are exactly the ids evaluation
    feeds the model. Truncation cuts the end (the response), never the prompt's start.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    output_ids = tokenizer(output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + output_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) if mask_prompt else list(prompt_ids)) + output_ids
    return {"input_ids": ids, "labels": labels[:max_length]}
