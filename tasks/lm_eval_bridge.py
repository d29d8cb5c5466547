"""Log-likelihood multiple-choice scoring through lm-eval, from an in-memory model, offline.

For each task the examples being scored are written, with their prompt, choices and gold index already resolved,
into a temporary folder together with a generated lm-eval task YAML (`dataset_path: json` over that file,
`output_type: multiple_choice`); lm-eval then scores them with `HFLM(pretrained=<model>, tokenizer=<tokenizer>)`.
Nothing touches the hub and nothing is written outside the temporary folder. The prompt strings come from the
task, so an instruction task is scored with the same pinned template it was trained with (the context ends in
"the correct answer is" and each choice is the label word after a space). Strings are encoded by
`tasks.prompts.encode_text`, the encoding of training and generation (`prompt_hflm`): the same BOS policy and the
prompt tokenized apart from the answer, so lm-eval scores exactly the token ids training saw.

Metrics: `acc` (argmax of summed log-likelihood) and `acc_norm` (per-byte normalized), as lm-eval defines them.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tasks.prompts import encode_text

if TYPE_CHECKING:
    from torch import nn

STDERR_BOOTSTRAP_ITERS = (
    1000  # lm-eval's switch for standard errors; accuracy (a mean) gets its closed form, not a bootstrap
)


@dataclass(frozen=True)
class ChoiceItem:
    """One multiple-choice question: the context, the candidate continuations and the gold index."""

    context: str
    choices: list[str]
    gold: int


def _safe_name(name: str) -> str:
    return "peftbench_" + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def _task_config(name: str, data_file: Path) -> dict[str, Any]:
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "context",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": " ",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
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
    """lm-eval scores of each named list of items: {name: {"acc", "acc_norm", "choices": [predicted index per item]}}.

    `progress` keeps lm-eval's own bar over its log-likelihood requests; without it the bar is off.
    """
    import datasets
    import lm_eval
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    was_training = model.training
    names = {name: _safe_name(name) for name in items}
    with tempfile.TemporaryDirectory(prefix="peft-bench-lm-eval-") as folder:
        for name, task_name in names.items():
            data_file = Path(folder) / f"{task_name}.json"
            data_file.write_text(
                json.dumps(
                    [{"context": item.context, "choices": item.choices, "gold": item.gold} for item in items[name]]
                ),
                encoding="utf-8",
            )
            (Path(folder) / f"{task_name}.yaml").write_text(
                yaml.safe_dump(_task_config(task_name, data_file), sort_keys=False), encoding="utf-8"
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
            bootstrap_iters=STDERR_BOOTSTRAP_ITERS,
            random_seed=0,
            numpy_random_seed=0,
            torch_random_seed=0,
            fewshot_random_seed=0,
        )
    model.train(was_training)
    scored = {}
    for name, task_name in names.items():
        samples = sorted(results["samples"][task_name], key=lambda sample: sample["doc_id"])
        chosen = [
            max(range(len(sample["filtered_resps"])), key=lambda i: sample["filtered_resps"][i][0])
            for sample in samples
        ]
        task_results = results["results"][task_name]
        scored[name] = {
            "acc": task_results["acc,none"],
            "acc_norm": task_results["acc_norm,none"],
            "acc_stderr": _stderr(task_results["acc_stderr,none"]),
            "choices": chosen,
        }
    return scored


def _stderr(value: Any) -> float | None:
    """lm-eval's standard error, or None where it gives "N/A" (a part of one example)."""
    return float(value) if isinstance(value, int | float) else None
