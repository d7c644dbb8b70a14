"""Evaluate a knowledge base on labelled questions: the gate's rejection precision/recall/F1, retrieval
recall@k and MRR against gold sources, and (with a model) answer correctness by exact match or containment.

Questions: JSON Lines (or a JSON list) of `{"question", "answerable"?: bool, "sources"?: [file names],
"answer"?: str}` (see `puyu.kb.questions.read_labelled_questions`).
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from typing import Any

import numpy as np

from ..kb.assistant import Assistant
from ..kb.gate import accepts, scores_of
from ..kb.retrieval import KnowledgeBase


def source_matches(source: str, gold: str) -> bool:
    """Whether a chunk's source is the gold file: the same path, or a path ending in the gold name."""
    source, gold = source.replace("\\", "/"), gold.replace("\\", "/")
    return source == gold or source.endswith("/" + gold.lstrip("/"))


def normalise_answer(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def retrieval_metrics(kb: KnowledgeBase, questions: list[dict[str, Any]], k: int, mode: str | None) -> dict[str, Any]:
    """recall@k (a gold source among the top k) and MRR (of the first gold chunk, within the top 50)."""
    found, reciprocal = [], []
    for item in questions:
        if not item["answerable"] or not item["sources"]:
            continue
        hits = kb.search(item["question"], k=max(k, 50), mode=mode)
        ranks = [
            r for r, hit in enumerate(hits, 1) if any(source_matches(hit.chunk.source, g) for g in item["sources"])
        ]
        found.append(bool(ranks) and ranks[0] <= k)
        reciprocal.append(1.0 / ranks[0] if ranks else 0.0)
    return {
        "questions": len(found),
        f"recall@{k}": float(np.mean(found)) if found else None,
        "mrr": float(np.mean(reciprocal)) if reciprocal else None,
    }


def rejection_metrics(kb: KnowledgeBase, questions: list[dict[str, Any]]) -> dict[str, Any]:
    """Precision, recall and F1 of the gate's "answer" decision (answerable = positive); None when uncalibrated."""
    calibration = kb.snapshot.calibration
    if calibration is None:
        return {"gate": "off (not calibrated)"}
    labels = np.asarray([int(item["answerable"]) for item in questions])
    decided = np.asarray([int(accepts(calibration, kb.signals(item["question"]))[0]) for item in questions])
    return {"gate": "calibrated", **scores_of(labels, decided), "answerable": int(labels.sum()), "total": len(labels)}


async def _answers(assistant: Assistant, questions: list[dict[str, Any]]) -> list[Any]:
    return [await assistant.aask(item["question"]) for item in questions]


def answer_metrics(assistant: Assistant, questions: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict]]:
    """Exact-match and contains rates over answerable questions with a gold answer, and each answer."""
    graded = [item for item in questions if item["answerable"] and item["answer"]]
    answers = asyncio.run(_answers(assistant, graded))
    rows, exact, contains = [], [], []
    for item, answer in zip(graded, answers, strict=True):
        gold, said = normalise_answer(item["answer"]), normalise_answer(answer.answer)
        exact.append(said == gold)
        contains.append(bool(gold) and gold in said)
        rows.append({**item, "prediction": answer.to_json()})
    metrics = {
        "questions": len(graded),
        "exact": float(np.mean(exact)) if exact else None,
        "contains": float(np.mean(contains)) if contains else None,
    }
    return metrics, rows


def evaluate_kb(
    kb: KnowledgeBase, questions: list[dict[str, Any]], *, k: int = 5, assistant: Assistant | None = None
) -> dict[str, Any]:
    """All the knowledge-base figures for one question set.

    Args:
        kb: the opened knowledge base.
        questions: labelled questions.
        k: the cut-off of recall@k.
        assistant: answers the questions with gold answers (skipped when None).
    """
    report: dict[str, Any] = {"kb": kb.describe(), "rejection": rejection_metrics(kb, questions), "retrieval": {}}
    modes = ["bm25"] + (["dense", "hybrid"] if kb.dense_ready else [])
    for mode in modes:
        report["retrieval"][mode] = retrieval_metrics(kb, questions, k, mode)
    if assistant is not None:
        report["answers"], report["predictions"] = answer_metrics(assistant, questions)
    return report
