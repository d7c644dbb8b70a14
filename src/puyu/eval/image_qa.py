"""Image question answering: multiple choice or short answer over local images (e.g. the image world's qa.jsonl).

Each record `{"image": path, "question": str, "choices"?: [str], "answer": str, "id"?: str}` becomes one user
message with the image as a base64 `image_url` part, so the same conversations go to an in-process vision
model (`puyu.LLM`) or to any OpenAI-compatible endpoint. Replies are generated greedily; multiple choice
takes the first option letter (or the option's text) in the reply, short answer compares the reply's first
word with the reference, both case-insensitive.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from puyu.errors import PuyuError
from puyu.eval.tasks.base import iter_jsonl
from puyu.generation.sampling import SamplingParams
from puyu.model.vision.images import load_image, to_data_url

Mode = Literal["choice", "short"]
LETTERS = "ABCDEFGHIJ"

ChatFunction = Callable[[list[list[dict]], SamplingParams], list[str]]


@dataclass
class ImageQAResult:
    """Accuracy overall and per record kind, with every prediction."""

    mode: str
    accuracy: float
    count: int
    by_kind: dict[str, float] = field(default_factory=dict)
    predictions: list[dict[str, Any]] = field(default_factory=list)


def load_records(path: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, Any]]:
    """The records of a qa.jsonl, checked, with image paths made absolute."""
    file = Path(path)
    records = []
    for line, record in iter_jsonl(file, layout='{"image", "question", "answer", "choices"?} per line'):
        for key in ("image", "question", "answer"):
            if not isinstance(record.get(key), str) or not record[key]:
                raise PuyuError(f"{file}:{line}: record needs a non-empty string {key!r}")
        choices = record.get("choices")
        if choices is not None and (not isinstance(choices, list) or len(choices) > len(LETTERS) or not choices):
            raise PuyuError(f"{file}:{line}: 'choices' must be a list of 1 to {len(LETTERS)} options")
        record = dict(record, image=str((file.parent / record["image"]).resolve()))
        record.setdefault("id", str(line))
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise PuyuError(f"{file}: no records")
    return records


def prompt_text(record: dict[str, Any], mode: Mode) -> str:
    if mode == "choice":
        options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(record["choices"]))
        return f"{record['question']}\n{options}\nAnswer with the option's letter."
    return f"{record['question']} Answer with one word."


def conversation(record: dict[str, Any], mode: Mode) -> list[dict]:
    image = load_image(record["image"], source=record["image"]).image
    parts = [
        {"type": "image_url", "image_url": {"url": to_data_url(image)}},
        {"type": "text", "text": prompt_text(record, mode)},
    ]
    return [{"role": "user", "content": parts}]


def score(record: dict[str, Any], reply: str, mode: Mode) -> bool:
    """Whether `reply` answers `record` correctly."""
    answer = record["answer"].strip().lower()
    text = reply.strip()
    if mode == "choice":
        choices = [str(c).strip().lower() for c in record["choices"]]
        match = re.search(rf"\b([{LETTERS[: len(choices)]}])\b", text)
        if match:
            return choices[LETTERS.index(match.group(1))] == answer
        return text.lower().startswith(answer) or text.lower() == answer
    words = re.findall(r"\w+", text.lower())
    return bool(words) and words[0] == answer


def evaluate_image_qa(
    chat: ChatFunction,
    records: Sequence[dict[str, Any]],
    mode: Mode = "choice",
    max_tokens: int = 8,
    batch_size: int = 16,
) -> ImageQAResult:
    """Ask every question and score the replies.

    Args:
        chat: conversations → reply texts (e.g. `local_chat(llm)` or an `OpenAIModel`'s `chat`).
        records: from `load_records`.
        mode: "choice" (needs `choices` in every record) or "short".
        max_tokens: reply budget.
        batch_size: conversations per call.
    """
    if mode not in ("choice", "short"):
        raise PuyuError(f"mode must be 'choice' or 'short', got {mode!r}")
    if mode == "choice" and any(not r.get("choices") for r in records):
        raise PuyuError("multiple-choice image QA needs 'choices' in every record")
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    predictions = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        replies = chat([conversation(r, mode) for r in batch], params)
        for record, reply in zip(batch, replies, strict=True):
            correct = score(record, reply, mode)
            predictions.append({"id": record["id"], "kind": record.get("kind", ""), "reply": reply,
                                "answer": record["answer"], "correct": correct})  # fmt: skip
    kinds: dict[str, list[bool]] = {}
    for p in predictions:
        kinds.setdefault(p["kind"], []).append(p["correct"])
    by_kind = {k: sum(v) / len(v) for k, v in sorted(kinds.items())}
    accuracy = sum(p["correct"] for p in predictions) / len(predictions)
    return ImageQAResult(mode, accuracy, len(predictions), by_kind, predictions)


def local_chat(llm: Any) -> ChatFunction:
    """A `puyu.LLM` as a chat function (its `chat` takes image parts directly)."""

    def chat(conversations: list[list[dict]], params: SamplingParams) -> list[str]:
        return [out.content for out in llm.chat(conversations, params)]

    return chat
