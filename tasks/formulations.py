"""lm-eval's standard formulations of the commonsense sets, rebuilt from the LLM-Adapters files.

lm-eval's own task configs (`arc_easy`, `arc_challenge`, `piqa`, `hellaswag`, `winogrande`, `social_iqa`,
`openbookqa`) score the log-likelihood of each answer TEXT after a short prompt of their own ("Question: ...\nAnswer:"),
not the label words ("answer2") that LLM-Adapters' instructions ask for. Each set here is two small pure functions:

- `document`: an LLM-Adapters row -> the document lm-eval's config reads (the fields of the set's Hugging Face
  dataset), cut out of the instruction at its option markers ("Answer1: ", "Solution2: ", ...), each of which must
  occur exactly once;
- `item`: that document -> what the config asks lm-eval to score (its `doc_to_text`, `doc_to_choice` and
  `doc_to_target`, HellaSwag's `preprocess`, WinoGrande's partial evaluation), as a `ChoiceItem`.

`item` is checked against lm-eval's shipped configs run on the same documents (tests/test_lm_eval_parity.py). Where a
set cannot be rebuilt exactly, the loss is in `document`, from what LLM-Adapters' files no longer hold:

- HellaSwag: the local file is the official validation set as klosax/hellaswag_text_data preprocessed it: `ctx` whole
  (ctx_a and ctx_b joined, ctx_b not capitalised) and the WikiHow tags removed by rules of its own. lm-eval capitalises
  ctx_b (`str.capitalize`, which also lowercases the rest of it). Here ctx_b is what follows the context's last
  sentence end when the context does not end a sentence (ActivityNet items, whose ctx_b opens the next sentence), else
  empty (WikiHow items); lm-eval's `preprocess` then runs on top and removes any bracket the tag rules left. Items
  whose ctx_b held a sentence end, or whose ending began with a tag (lm-eval's keeps a leading space there, the local
  text none), differ from lm-eval's text.
- SIQA: the instruction holds "{context} {question}"; lm-eval's prompt "Q: {context} {question}\nA:" is the same
  string wherever the two are split, so the prompt is exact when LLM-Adapters joined them with one space (the split
  at the last sentence end only names the fields).
- ARC and OpenBookQA: the original answer keys ("A"-"E" or "1"-"4") are gone; lm-eval uses only their position,
  which the option order keeps.
- BoolQ has no formulation here: lm-eval's `boolq` prompt opens with the passage, which LLM-Adapters' BoolQ rows do
  not carry, so BoolQ keeps the label-word protocol.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tasks.lm_eval_bridge import ChoiceItem

Document = dict[str, Any]
KEYS = "ABCDE"  # answer keys by option position (ARC, OpenBookQA)
SENTENCE_END = re.compile(r"[.!?][\"']? ")  # a sentence end and the space after it
ENDS_SENTENCE = re.compile(r"[.!?][\"']?$")


def cut(text: str, head: str, markers: list[str]) -> list[str]:
    """The pieces of `text` after `head`, split at `markers`, each of which must occur exactly once, in this order."""
    if not text.startswith(head):
        raise ValueError(f"the instruction does not start with {head!r}")
    pieces, rest = [], text[len(head) :]
    for marker in markers:
        if text.count(marker) != 1 or marker not in rest:
            raise ValueError(
                f"{marker!r} occurs {text.count(marker)} times in the instruction, expected once, in order"
            )
        piece, _, rest = rest.partition(marker)
        pieces.append(piece)
    return [*pieces, rest]


@dataclass(frozen=True)
class Layout:
    """How an LLM-Adapters instruction lays out one set: its opening, the word numbering the options, the separators
    before the first option, between options and before "Answer format: "."""

    head: str
    word: str
    first: str = "\n\n"
    between: str = " "
    end: str = "\n\n"

    def split(self, row: dict[str, Any]) -> tuple[str, list[str], int]:
        """(the text before the options, the options, the index of the row's answer)."""
        labels = row["instruction"].rpartition("Answer format: ")[2].split("/")
        markers = [
            f"{self.first}{self.word}1: ",
            *(f"{self.between}{self.word}{number}: " for number in range(2, len(labels) + 1)),
            f"{self.end}Answer format: ",
        ]
        stem, *options, _ = cut(row["instruction"], self.head, markers)
        return stem, options, labels.index(row["answer"])


QUESTION = Layout("Please choose the correct answer to the question: ", "Answer")
SOLUTION = Layout("Please choose the correct solution to the question: ", "Solution", between="\n\n")
ENDING = Layout("Please choose the correct ending to complete the given sentence: ", "Ending")
BLANK = Layout(
    "Please choose the correct answer to fill in the blank to complete the given sentence: ", "Option", end=" "
)


def last_sentence(text: str) -> tuple[str, str]:
    """(`text` up to its last sentence end, what follows it), split at the space after that end; ("", text) without one."""
    ends = list(SENTENCE_END.finditer(text))
    return (text[: ends[-1].end() - 1], text[ends[-1].end() :]) if ends else ("", text)


def _choices(options: list[str]) -> dict[str, list[str]]:
    return {"text": options, "label": list(KEYS[: len(options)])}


def arc_document(row: dict[str, Any]) -> Document:
    question, options, gold = QUESTION.split(row)
    return {"question": question, "choices": _choices(options), "answerKey": KEYS[gold]}


def openbookqa_document(row: dict[str, Any]) -> Document:
    question, options, gold = QUESTION.split(row)
    return {"question_stem": question, "choices": _choices(options), "answerKey": KEYS[gold]}


def piqa_document(row: dict[str, Any]) -> Document:
    goal, (first, second), gold = SOLUTION.split(row)
    return {"goal": goal, "sol1": first, "sol2": second, "label": gold}


def siqa_document(row: dict[str, Any]) -> Document:
    text, options, gold = QUESTION.split(row)
    context, question = last_sentence(text)
    if not context:  # no sentence end: any split at a space gives lm-eval's prompt the same text
        context, _, question = text.partition(" ")
    answers = dict(zip(("answerA", "answerB", "answerC"), options, strict=True))
    return {"context": context, "question": question, **answers, "label": str(gold + 1)}


def hellaswag_document(row: dict[str, Any]) -> Document:
    text, endings, gold = ENDING.split(row)
    activity, separator, context = text.partition(": ")
    if not separator:
        raise ValueError("the sentence has no 'activity: context' form")
    ctx_a, ctx_b = (context, "") if ENDS_SENTENCE.search(context) else last_sentence(context)
    return {"activity_label": activity, "ctx_a": ctx_a, "ctx_b": ctx_b, "endings": endings, "label": str(gold)}


def winogrande_document(row: dict[str, Any]) -> Document:
    sentence, (first, second), gold = BLANK.split(row)
    if sentence.count("_") != 1:
        raise ValueError("the sentence has no single blank '_'")
    return {"sentence": sentence, "option1": first, "option2": second, "answer": str(gold + 1)}


def arc_item(doc: Document) -> ChoiceItem:
    """lm-eval's arc_easy / arc_challenge."""
    choices = doc["choices"]
    return ChoiceItem(
        f"Question: {doc['question']}\nAnswer:", list(choices["text"]), choices["label"].index(doc["answerKey"])
    )


def openbookqa_item(doc: Document) -> ChoiceItem:
    """lm-eval's openbookqa: the bare question stem."""
    choices = doc["choices"]
    return ChoiceItem(doc["question_stem"], list(choices["text"]), choices["label"].index(doc["answerKey"].lstrip()))


def piqa_item(doc: Document) -> ChoiceItem:
    """lm-eval's piqa."""
    return ChoiceItem(f"Question: {doc['goal']}\nAnswer:", [doc["sol1"], doc["sol2"]], int(doc["label"]))


def siqa_item(doc: Document) -> ChoiceItem:
    """lm-eval's social_iqa."""
    return ChoiceItem(
        f"Q: {doc['context']} {doc['question']}\nA:",
        [doc["answerA"], doc["answerB"], doc["answerC"]],
        int(doc["label"]) - 1,
    )


def preprocess(text: str) -> str:
    """lm-eval's HellaSwag text cleaning (`hellaswag/utils.py`): WikiHow's "[title]" ends a sentence, other brackets go."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag_item(doc: Document) -> ChoiceItem:
    """lm-eval's hellaswag: "activity: ctx_a Ctx_b", the endings, both cleaned by `preprocess`."""
    query = preprocess(doc["activity_label"] + ": " + doc["ctx_a"] + " " + doc["ctx_b"].capitalize())
    return ChoiceItem(query, [preprocess(ending) for ending in doc["endings"]], int(doc["label"]))


def winogrande_item(doc: Document) -> ChoiceItem:
    """lm-eval's winogrande, a partial evaluation: the sentence up to the blank filled with each option is a context,
    and the log-likelihood scored is that of the rest of the sentence after each."""
    blank = doc["sentence"].index("_")
    return ChoiceItem(
        "",
        [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])],
        int(doc["answer"]) - 1,
        continuation=doc["sentence"][blank + 1 :].strip(),
    )


@dataclass(frozen=True)
class Formulation:
    """lm-eval's standard formulation of one set: the name of lm-eval's task config and the two steps to it."""

    task: str
    document: Callable[[dict[str, Any]], Document]
    item: Callable[[Document], ChoiceItem]

    def choice_item(self, row: dict[str, Any]) -> ChoiceItem:
        """What lm-eval scores for an LLM-Adapters row."""
        return self.item(self.document(row))


ARC_EASY = Formulation("arc_easy", arc_document, arc_item)
ARC_CHALLENGE = Formulation("arc_challenge", arc_document, arc_item)
PIQA = Formulation("piqa", piqa_document, piqa_item)
HELLASWAG = Formulation("hellaswag", hellaswag_document, hellaswag_item)
WINOGRANDE = Formulation("winogrande", winogrande_document, winogrande_item)
SIQA = Formulation("social_iqa", siqa_document, siqa_item)
OPENBOOKQA = Formulation("openbookqa", openbookqa_document, openbookqa_item)
