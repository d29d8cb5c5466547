"""The one pinned instruction template of the decoder tasks, its hash, the BOS policy and the token encoding.

The template is LLM-Adapters' Alpaca-style evaluation prompt byte for byte (`commonsense_evaluate.py`), with and
without an `### Input:` block, including the 16-space indentation its indented f-strings put before each line and
after "### Response:\n". LLM-Adapters trains on a copy that differs in whitespace (`finetune.py`); here training uses
the very evaluation prompt: the training text is `prompt + output + eos`. The sha256 of the template
(`TEMPLATE_HASH`) is stored with every result.

Token stream: every protocol (training, generation, lm-eval log-likelihood) encodes the prompt and what follows it
separately (`encode_text`), so the ids of the prompt never depend on the answer after it (a prompt ending in spaces
would otherwise merge them into the answer's first token), and prepends BOS exactly when the tokenizer adds it by
default (`adds_bos`: LLaMA's does, SmolLM2's does not), as LLM-Adapters' `tokenizer(prompt)` does.

Prompt tokens are masked out of the loss (labels -100) by default; `mask_prompt=False` trains on the whole text
as LLM-Adapters does (`train_on_inputs=True`). The flag is recorded with the template hash.
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.labels import IGNORED

INDENT = " " * 16
RESPONSE_START = f"### Response:\n{INDENT}"
TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n\n"
    f"{INDENT}### Instruction:\n{INDENT}{{instruction}}\n\n{INDENT}{RESPONSE_START}"
)
TEMPLATE_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n"
    f"{INDENT}### Instruction:\n{INDENT}{{instruction}}\n\n{INDENT}### Input:\n{INDENT}{{input}}\n\n{INDENT}{RESPONSE_START}"
)
TEMPLATE_HASH = hashlib.sha256((TEMPLATE + "\0" + TEMPLATE_WITH_INPUT).encode()).hexdigest()
BOS_POLICY = "BOS before the prompt in training, generation and lm-eval exactly when the tokenizer adds it by default; prompt and answer tokenized separately"


def build_prompt(instruction: str, input_text: str = "") -> str:
    """The prompt of one example, ending right where the response starts."""
    if input_text:
        return TEMPLATE_WITH_INPUT.format(instruction=instruction, input=input_text)
    return TEMPLATE.format(instruction=instruction)


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts BOS in front of a text by default (LLaMA's does)."""
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id


def encode_text(text: str, tokenizer: Any, with_bos: bool = True) -> list[int]:
    """Token ids of `text` as every protocol feeds them: [BOS if `adds_bos`] + prompt ids + ids of the rest.

    The prompt is everything up to the last "### Response:" line of the template; a text without one is encoded whole.
    """
    head, marker, rest = text.rpartition(RESPONSE_START)
    pieces = [head + marker, rest] if marker else [text]
    bos = [tokenizer.bos_token_id] if with_bos and adds_bos(tokenizer) else []
    return bos + [
        token for piece in pieces if piece for token in tokenizer(piece, add_special_tokens=False)["input_ids"]
    ]


def encode_for_training(
    prompt: str, output: str, tokenizer: Any, max_length: int, mask_prompt: bool = True
) -> dict[str, list[int]]:
    """Token ids of `prompt + output + eos`; labels are -100 on the prompt (and BOS) when `mask_prompt`.

    The prompt ids are exactly the ids generation and lm-eval feed the model. Truncation cuts the end (the
    response), never the prompt's start.
    """
    prompt_ids = encode_text(prompt, tokenizer)
    output_ids = tokenizer(output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt_ids + output_ids)[:max_length]
    labels = ([IGNORED] * len(prompt_ids) if mask_prompt else list(prompt_ids)) + output_ids
    return {"input_ids": ids, "labels": labels[:max_length]}
