"""HellaSwag in its release JSONL (hellaswag_val.jsonl, shots from hellaswag_train.jsonl): {"activity_label",
"ctx_a", "ctx_b", "ctx", "endings": [4 str], "label"}. Preprocessing and prompt as lm-evaluation-harness's."""

from __future__ import annotations

import re
from pathlib import Path

from puyu.eval.tasks.base import Doc, Task, TaskFormatError, iter_jsonl, take

LAYOUT = 'HellaSwag layout: hellaswag_val.jsonl with {"ctx" (or ctx_a, ctx_b, activity_label), "endings", "label"}'


def preprocess(text: str) -> str:
    """lm-eval's clean-up of WikiHow artefacts."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _docs(path: Path) -> list[Doc]:
    docs = []
    for number, record in iter_jsonl(path, layout=LAYOUT):
        endings, label = record.get("endings"), record.get("label")
        if not isinstance(endings, list) or label in (None, ""):
            raise TaskFormatError(f"{path}:{number}: needs endings (list) and label ({LAYOUT})")
        if "ctx_a" in record:
            ctx = record["ctx_a"] + " " + str(record.get("ctx_b", "")).capitalize()
        else:
            ctx = str(record.get("ctx", ""))
        label_text = record.get("activity_label")
        query = preprocess(f"{label_text}: {ctx}" if label_text else ctx)
        docs.append(
            Doc(
                id=str(record.get("ind", number)),
                query=query,
                choices=[preprocess(e) for e in endings],
                gold=int(label),
            )
        )
    return docs


def load_hellaswag(root: Path, *, shots: int = 0, limit: int | None = None) -> Task:
    """HellaSwag validation split (the test split has no labels)."""
    pairs = []
    if shots:
        pairs = [(d.query, d.choices[int(d.gold)]) for d in _docs(root / "hellaswag_train.jsonl")[:shots]]  # type: ignore[arg-type]
    path = root / "hellaswag_val.jsonl"
    if not path.is_file() and (root / "validation.jsonl").is_file():
        path = root / "validation.jsonl"
    docs = _docs(path)
    for doc in docs:
        doc.shots = pairs
    return Task(
        name="hellaswag",
        kind="multiple_choice",
        docs=take(docs, limit),
        dimension="understanding",
        acc_norm=True,
        extractor="text",
        max_tokens=64,
    )
