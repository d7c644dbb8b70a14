"""Labelled question files and calibrating a knowledge base's gate on them.

HuixiangDou's format: a JSON list of question strings, one file of good (on-topic) questions and one of
bad (off-topic) ones. The evaluation format is JSON Lines (or a JSON list) of objects
`{"question", "answerable"?: bool, "sources"?: [file names], "answer"?: str}`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ..errors import PuyuError, one_line
from .answer import llm_check
from .gate import calibrate
from .retrieval import KnowledgeBase
from .store import locked, replace_calibration

MAX_QUESTION_CHARS = 4096


def read_question_list(path: str | Path) -> list[str]:
    """A JSON list of questions (strings); blank entries are dropped.

    Raises:
        PuyuError: not a readable JSON list of strings.
    """
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PuyuError(f"{path}: not a readable JSON file: {one_line(exc)}") from None
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise PuyuError(f"{path}: expected a JSON list of question strings")
    return [item[:MAX_QUESTION_CHARS] for item in items if item.strip()]


def read_labelled_questions(path: str | Path) -> list[dict[str, Any]]:
    """Evaluation questions from JSON Lines or a JSON list of objects with at least "question".

    Raises:
        PuyuError: unreadable, or a record without a question.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PuyuError(f"{path}: {one_line(exc)}") from None
    try:
        records = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except ValueError as exc:
        raise PuyuError(f"{path}: malformed JSON: {one_line(exc)}") from None
    out = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("question"), str):
            raise PuyuError(f'{path}: record {number} has no "question" string')
        sources = record.get("sources") or []
        if not isinstance(sources, list):
            raise PuyuError(f'{path}: record {number}: "sources" must be a list of file names')
        out.append(
            {
                "question": record["question"][:MAX_QUESTION_CHARS],
                "answerable": bool(record.get("answerable", True)),
                "sources": [str(source) for source in sources],
                "answer": str(record["answer"]) if record.get("answer") is not None else None,
            }
        )
    return out


async def _llm_scores(client: Any, kb: KnowledgeBase, questions: list[str]) -> list[float]:
    return [float(await llm_check(client, "relevance", q, kb.search(q, k=4))) for q in questions]


def calibrate_kb(
    kb: KnowledgeBase,
    good: list[str],
    bad: list[str],
    *,
    folds: int = 5,
    seed: int = 0,
    save: bool = True,
    client: Any = None,
) -> dict[str, Any]:
    """Fit the gate of an opened knowledge base on labelled questions and (with `save`) store it with the index.

    Args:
        kb: the knowledge base, opened with the embedder it will answer with.
        good: questions it should answer.
        bad: questions it should refuse.
        folds: cross-validation folds.
        seed: fold and bootstrap seed.
        save: write calibration.json into the current version.
        client: a model client: adds its 0-10 relevance score of the top chunks as the signal "llm" (the
            assistant then asks the same model before the gate decides).
    """
    if not kb.chunks:
        raise PuyuError("the knowledge base is empty: add documents before calibrating its gate")
    good_signals = [kb.signals(question) for question in good]
    bad_signals = [kb.signals(question) for question in bad]
    if client is not None:
        for signals, score in zip(
            good_signals + bad_signals, asyncio.run(_llm_scores(client, kb, good + bad)), strict=True
        ):
            signals["llm"] = score
    calibration = calibrate(good_signals, bad_signals, folds=folds, seed=seed)
    calibration["kb_version"] = kb.snapshot.version
    calibration["retrieval"] = kb.mode
    if save:
        folder = kb.snapshot.folder.parent
        with locked(folder):
            replace_calibration(folder, calibration)
        kb.snapshot.calibration = calibration
    return calibration
