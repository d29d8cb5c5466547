"""Log-likelihood multiple-choice scoring through lm-eval, from an in-memory model, offline.

For each task the examples being scored are written, with their prompt, choices and gold index already resolved,
into a temporary folder together with a generated lm-eval task YAML (`dataset_path: json` over that file,
`output_type: multiple_choice`); lm-eval then scores them with `HFLM(pretrained=<model>, tokenizer=<tokenizer>)`.
Nothing touches the hub and nothing is written outside the temporary folder. The prompt strings come from the
task, so an instruction task is scored with the same pinned template it was trained with (the context ends in
"the correct answer is" and each choice is the label word after a space). Strings are encoded by
`tasks.prompts.encode_text`, the encoding of training and generation (`prompt_hflm`): the same BOS policy and the
prompt tokenized apart from the answer, so lm-eval scores exactly the token ids training saw.

An item is one context with several continuations (the choices), or, as lm-eval's multiple input (WinoGrande's partial
evaluation), several contexts (the choices) followed by one continuation.

Metrics, as lm-eval defines them: `acc` (the argmax of the summed log-likelihood) and `acc_norm` (the argmax of the
log-likelihood divided by the choice's length: lm-eval's code counts characters, which are bytes in ASCII text), with
the standard errors of both. A multiple-input item's choices share one continuation, so dividing by its length changes
no argmax: its `acc_norm` is its `acc`. A distributed run splits the items across its ranks.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

import yaml

from tasks.base import across_ranks
from tasks.prompts import encode_text

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ChoiceItem:
    """One multiple-choice question: the context, the candidate continuations and the gold index. With `continuation`
    set it is lm-eval's multiple input: the choices are candidate contexts, each followed by that one continuation
    (and `context` is empty)."""

    context: str
    choices: list[str]
    gold: int
    continuation: str | None = None


def _safe_name(name: str) -> str:
    return "peftbench_" + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def _task_config(name: str, data_file: Path, multiple_input: bool) -> dict[str, Any]:
    """lm-eval's config of one list of items; for multiple input, `doc_to_text` gives the gold index (an int), which
    is how lm-eval tells that the choices are contexts."""
    metrics = ["acc"] if multiple_input else ["acc", "acc_norm"]
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "gold" if multiple_input else "context",
        "doc_to_choice": "choices",
        "doc_to_target": "continuation" if multiple_input else "gold",
        "target_delimiter": " ",
        "metric_list": [{"metric": metric, "aggregation": "mean", "higher_is_better": True} for metric in metrics],
        "metadata": {"version": 1.0},
    }


def prompt_hflm(model: nn.Module, tokenizer: Any, batch_size: int) -> Any:
    """lm-eval's `HFLM` over the in-memory model, encoding strings with `encode_text` instead of the tokenizer's default.

    (lm-eval is imported here, not at module level: it takes seconds and only evaluation needs it.)
    """
    from lm_eval.models.huggingface import HFLM

    class PromptHFLM(HFLM):
        def tok_encode(
            self,
            string: str,
            add_special_tokens: bool | None = None,
            left_truncate_len: int | None = None,
            **kwargs: Any,
        ) -> list[int]:
            ids = encode_text(string, self.tokenizer, with_bos=add_special_tokens is not False)
            return ids[-left_truncate_len:] if left_truncate_len else ids

    return PromptHFLM(
        pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(next(model.parameters()).device)
    )


def score_multiple_choice(
    model: nn.Module, tokenizer: Any, items: dict[str, list[ChoiceItem]], batch_size: int, progress: bool = False
) -> dict[str, dict[str, Any]]:
    """lm-eval scores of each named list of items: {name: {"acc", "acc_norm", "acc_stderr", "acc_norm_stderr",
    "choices", "choices_norm"}}, where "choices" is the predicted index per item and "choices_norm" that of acc_norm.

    In a distributed run the items are split across ranks (`tasks.base.across_ranks`), and each rank's lm-eval scores
    its share. The metrics are then aggregated from the gathered per-item outcomes as lm-eval aggregates them: the
    mean, and its standard error (sample standard deviation / sqrt(n); none for a single item). `progress` keeps
    lm-eval's own bar over its log-likelihood requests; without it the bar is off.
    """
    from lm_eval.api.metrics import mean_stderr

    flat = [(name, item) for name, part in items.items() for item in part]
    outcomes = across_ranks(flat, partial(_score_items, model, tokenizer, batch_size=batch_size, progress=progress))
    scored = {}
    for name in items:
        own = [outcome for (part, _), outcome in zip(flat, outcomes) if part == name]
        scored[name] = {"choices": [outcome["choice"] for outcome in own]}
        scored[name]["choices_norm"] = [outcome["choice_norm"] for outcome in own]
        for metric in ("acc", "acc_norm"):
            hits = [outcome[metric] for outcome in own]
            scored[name][metric] = fmean(hits)
            # lm-eval's own standard error; undefined for one item
            scored[name][f"{metric}_stderr"] = mean_stderr(hits) if len(hits) > 1 else None
    return scored


def _score_items(
    model: nn.Module, tokenizer: Any, named: list[tuple[str, ChoiceItem]], batch_size: int, progress: bool
) -> list[dict[str, Any]]:
    """lm-eval's outcome for each (name, item), in order: {"acc", "acc_norm" (0 or 1), "choice", "choice_norm"
    (argmax indices)}."""
    if not named:
        return []
    import datasets
    import lm_eval
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    was_training = model.training
    names = {name: _safe_name(name) for name, _ in named}
    with tempfile.TemporaryDirectory(prefix="peft-bench-lm-eval-") as folder:
        for name, task_name in names.items():
            items = [item for part, item in named if part == name]
            multiple_input = items[0].continuation is not None
            if any((item.continuation is not None) != multiple_input for item in items):
                raise ValueError(f"the items of {name!r} mix multiple-input items with single-context ones")
            data_file = Path(folder) / f"{task_name}.json"
            data_file.write_text(
                json.dumps(
                    [{key: value for key, value in asdict(item).items() if value is not None} for item in items]
                ),
                encoding="utf-8",
            )
            (Path(folder) / f"{task_name}.yaml").write_text(
                yaml.safe_dump(_task_config(task_name, data_file, multiple_input), sort_keys=False), encoding="utf-8"
            )
        lm = prompt_hflm(model.eval(), tokenizer, batch_size)
        lm.loglikelihood = partial(
            lm.loglikelihood, disable_tqdm=not progress
        )  # lm-eval's evaluator has no switch for it
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=list(names.values()),
            task_manager=TaskManager(include_path=folder, include_defaults=False),
            num_fewshot=0,
            log_samples=True,
            bootstrap_iters=0,  # the standard errors come from the gathered items (score_multiple_choice)
            random_seed=0,
            numpy_random_seed=0,
            torch_random_seed=0,
            fewshot_random_seed=0,
        )
    model.train(was_training)
    samples = {
        name: iter(sorted(results["samples"][task_name], key=lambda sample: sample["doc_id"]))
        for name, task_name in names.items()
    }
    outcomes = []
    for name, item in named:
        sample = next(samples[name])
        loglikelihoods = [response[0] for response in sample["filtered_resps"]]
        choice = _argmax(loglikelihoods)
        # lm-eval's acc_norm divides by the choice's length in characters (`len`, as its process_results does)
        normalized = (
            loglikelihoods
            if item.continuation is not None
            else [value / len(text) for value, text in zip(loglikelihoods, item.choices)]
        )
        outcomes.append(
            {
                "acc": float(sample["acc"]),
                "acc_norm": float(sample.get("acc_norm", sample["acc"])),  # multiple input: acc (see the docstring)
                "choice": choice,
                "choice_norm": _argmax(normalized),
            }
        )
    return outcomes


def _argmax(values: list[float]) -> int:
    """The index of the largest value, the first on a tie (as numpy's argmax, which lm-eval uses)."""
    return max(range(len(values)), key=values.__getitem__)
