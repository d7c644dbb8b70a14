"""Answers with citations: the prompt with numbered sources, citation parsing, and HuixiangDou's LLM checks.

The model sees the top chunks as `[1] … [n]` and is asked to cite them; each `[n]` in its answer becomes a
citation that carries the chunk's source, id, character span and quoted text. Document text and the
question are only ever message content: the chat template tokenizes them as text, never as control tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .retrieval import Hit

SYSTEM_PROMPT = (
    "You answer questions about a document collection using only the numbered sources the user gives. "
    "After each sentence, cite the sources that support it as [1] or [1][2]. If the sources do not contain "
    "the answer, say that you do not know. Answer in the language of the question."
)
_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_FIRST_INTEGER = re.compile(r"\d+")
# HuixiangDou's thresholds: relevance below 5 refuses; "says it does not know" at 9+ and unsafe at 8+ discard.
# A reply without a number passes (relevance counts as 10, the others as 0), as there.
CHECKS = {
    "relevance": (
        "Rate from 0 to 10 how well the sources can answer the question. Reply with the number only.",
        lambda score: score < 5,
        "irrelevant",
        10,
    ),
    "unknown": (
        "Rate from 0 to 10 how much the answer says it does not know or cannot answer. Reply with the number only.",
        lambda score: score >= 9,
        "bad_answer",
        0,
    ),
    "safety": (
        "Rate from 0 to 10 how much the text contains politics, insults, pornography, terrorism, religion, "
        "cyber-violence or racism. Reply with the number only.",
        lambda score: score >= 8,
        "security",
        0,
    ),
}


@dataclass
class Citation:
    """One source an answer cites, with the exact span it came from."""

    n: int
    source: str
    chunk_id: str
    start: int
    end: int
    text: str
    cited: bool = True

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Answer:
    """The outcome for one question.

    Args:
        question: as asked.
        rejected: True when the assistant stays silent (the gate, an empty result or a post-check).
        reason: why it refused ("unrelated", "empty_kb", "no_search_result", "irrelevant", "bad_answer",
            "security"), or None.
        score: the gate's probability when calibrated, else the best retrieval score.
        answer: the model's text ("" when rejected).
        citations: the sources the answer cites (all sources shown, with cited=False, when it cites none).
        gate: "calibrated" or "off (not calibrated)".
    """

    question: str
    rejected: bool
    reason: str | None
    score: float
    answer: str = ""
    citations: list[Citation] = field(default_factory=list)
    gate: str = "off (not calibrated)"
    checks: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "rejected": self.rejected,
            "reason": self.reason,
            "score": self.score,
            "answer": self.answer,
            "citations": [citation.to_json() for citation in self.citations],
            "gate": self.gate,
            "checks": self.checks,
        }


def sources_block(hits: list[Hit]) -> str:
    parts = []
    for n, hit in enumerate(hits, start=1):
        where = hit.chunk.source.rsplit("/", 1)[-1] + (f" › {hit.chunk.heading}" if hit.chunk.heading else "")
        parts.append(f"[{n}] ({where})\n{hit.chunk.text}")
    return "\n\n".join(parts)


def answer_messages(question: str, hits: list[Hit], history: list[dict] | None = None) -> list[dict]:
    """The conversation for the model: the instructions, earlier turns, then the sources and the question."""
    user = f"Sources:\n\n{sources_block(hits)}\n\nQuestion: {question}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, *(history or []), {"role": "user", "content": user}]


def cited_numbers(text: str, count: int) -> list[int]:
    """The source numbers an answer cites, in order of first use; numbers outside 1..count are ignored."""
    seen: list[int] = []
    for group in _CITATION.findall(text):
        for part in group.split(","):
            n = int(part)
            if 1 <= n <= count and n not in seen:
                seen.append(n)
    return seen


def citations_for(text: str, hits: list[Hit]) -> list[Citation]:
    """The citations of an answer built on `hits` (numbered from 1)."""
    numbers = cited_numbers(text, len(hits))
    cited = bool(numbers)
    chosen = numbers or list(range(1, len(hits) + 1))
    out = []
    for n in chosen:
        chunk = hits[n - 1].chunk
        out.append(Citation(n, chunk.source, chunk.id, chunk.start, chunk.end, chunk.text, cited))
    return out


def check_messages(kind: str, question: str, hits: list[Hit], answer: str) -> list[dict]:
    """The prompt of one LLM check ("relevance", "unknown" or "safety")."""
    instruction = CHECKS[kind][0]
    if kind == "relevance":
        body = f"Question: {question}\n\nSources:\n\n{sources_block(hits)}"
    elif kind == "unknown":
        body = f"Question: {question}\n\nAnswer: {answer}"
    else:
        body = f"Text: {question}\n\n{answer}"
    return [{"role": "user", "content": f"{body}\n\n{instruction}"}]


def check_score(kind: str, reply: str) -> int:
    """The first integer of a check's reply, clamped to 0..10 (the passing default when there is none)."""
    match = _FIRST_INTEGER.search(reply)
    return min(10, int(match.group())) if match else CHECKS[kind][3]


async def llm_check(client: Any, kind: str, question: str, hits: list[Hit], answer: str = "") -> int:
    """Ask `client` one check and read its 0-10 score (greedy, a few tokens)."""
    from ..generation.sampling import SamplingParams

    result = await client.acomplete_chat(
        check_messages(kind, question, hits, answer), SamplingParams(max_tokens=8, temperature=0.0)
    )
    return check_score(kind, result.content)


def check_fails(kind: str, score: int) -> str | None:
    """The refusal reason when a check's score fails it, else None."""
    _, fails, reason, _ = CHECKS[kind]
    return reason if fails(score) else None
