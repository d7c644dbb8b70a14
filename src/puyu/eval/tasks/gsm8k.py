"""GSM8K: JSONL records {"question", "answer": "...reasoning... #### 42"} in test.jsonl (shots: first train.jsonl
records). Prompt and stops as lm-evaluation-harness's `gsm8k` task."""

from __future__ import annotations

from pathlib import Path

from puyu.eval.tasks.base import Doc, Task, TaskFormatError, iter_jsonl, take

LAYOUT = 'GSM8K layout: test.jsonl (and train.jsonl for shots) with {"question": ..., "answer": "... #### 42"}'


def _records(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for number, record in iter_jsonl(path, layout=LAYOUT):
        question, answer = record.get("question"), record.get("answer")
        if not isinstance(question, str) or not isinstance(answer, str) or "####" not in answer:
            raise TaskFormatError(f"{path}:{number}: needs string fields question and answer with '#### <number>'")
        pairs.append((question, answer))
    return pairs


def load_gsm8k(root: Path, *, shots: int = 5, limit: int | None = None) -> Task:
    """GSM8K test split, scored by the number after '####' (or the last number) in the generated answer."""
    examples = _records(root / "train.jsonl")[:shots] if shots else []
    pairs = [(f"Question: {q}\nAnswer:", a) for q, a in examples]
    docs = [
        Doc(id=str(i), query=f"Question: {q}\nAnswer:", gold=a.split("####")[-1].strip(), shots=pairs)
        for i, (q, a) in enumerate(_records(root / "test.jsonl"))
    ]
    return Task(
        name="gsm8k",
        kind="generation",
        docs=take(docs, limit),
        dimension="reasoning",
        metric="numeric_match",
        stop=["Question:", "</s>", "<|im_end|>"],
        extractor="gsm8k",
    )
