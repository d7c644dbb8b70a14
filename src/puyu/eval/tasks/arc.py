"""ARC (AI2 Reasoning Challenge) in AI2's JSONL form: {"id", "question": {"stem", "choices": [{"text", "label"}]},
"answerKey"} in ARC-Challenge/ARC-Challenge-Test.jsonl and ARC-Easy/ARC-Easy-Test.jsonl (shots from -Train).
Prompt as lm-evaluation-harness's `arc_easy`/`arc_challenge` (acc and acc_norm)."""

from __future__ import annotations

from pathlib import Path

from puyu.eval.tasks.base import Doc, Task, TaskFormatError, iter_jsonl, take

LAYOUT = (
    "ARC layout: ARC-{Challenge,Easy}/ARC-{Challenge,Easy}-{Train,Test}.jsonl with "
    '{"question": {"stem", "choices": [{"text", "label"}]}, "answerKey"}'
)


def _find(root: Path, level: str, split: str) -> Path:
    name = f"ARC-{level}-{split}.jsonl"
    for candidate in (root / f"ARC-{level}" / name, root / name):
        if candidate.is_file():
            return candidate
    raise TaskFormatError(f"{root}: no ARC-{level}/{name} (expected {LAYOUT})")


def _docs(path: Path) -> list[Doc]:
    docs = []
    for number, record in iter_jsonl(path, layout=LAYOUT):
        try:
            stem = record["question"]["stem"]
            choices = record["question"]["choices"]
            texts, labels = [c["text"] for c in choices], [c["label"] for c in choices]
            gold = labels.index(record["answerKey"])
        except (KeyError, TypeError, ValueError):
            raise TaskFormatError(f"{path}:{number}: not an ARC record ({LAYOUT})") from None
        docs.append(Doc(id=str(record.get("id", number)), query=f"Question: {stem}\nAnswer:", choices=texts, gold=gold))
    return docs


def load_arc(root: Path, level: str, *, shots: int = 0, limit: int | None = None) -> Task:
    """ARC-Challenge (reasoning) or ARC-Easy (knowledge) test split."""
    pairs = []
    if shots:
        pairs = [(d.query, d.choices[int(d.gold)]) for d in _docs(_find(root, level, "Train"))[:shots]]  # type: ignore[arg-type]
    docs = _docs(_find(root, level, "Test"))
    for doc in docs:
        doc.shots = pairs
    return Task(
        name=f"arc_{level.lower()}",
        kind="multiple_choice",
        docs=take(docs, limit),
        dimension="reasoning" if level == "Challenge" else "knowledge",
        acc_norm=True,
        extractor="text",
        max_tokens=32,
    )
