"""The knowledge-base assistant: gate → retrieval → optional relevance check → cited answer → optional checks.

One async path serves the CLI (through `ask`) and the HTTP server; retrieval runs in a worker thread so a
server's event loop never waits on numpy or the encoder.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..errors import PuyuError
from ..generation.sampling import SamplingParams
from .answer import CHECKS, Answer, answer_messages, check_fails, citations_for, llm_check
from .gate import accepts
from .retrieval import Hit, KnowledgeBase


@dataclass
class Prepared:
    """What retrieval and the gate decided before the model is asked."""

    question: str
    hits: list[Hit]
    score: float
    rejected: bool
    reason: str | None
    gate: str


class Assistant:
    """Answers questions from one knowledge base with a model client.

    Args:
        kb: the opened knowledge base.
        client: a `puyu.client.ModelClient` (local folder or OpenAI-compatible endpoint).
        k: chunks shown to the model.
        checks: LLM checks to run, any of "relevance" (before answering), "unknown" and "safety" (after).
        params: sampling of the answer (greedy, 384 tokens by default).
        use_gate: False answers even what the calibrated gate would refuse.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        client: object,
        *,
        k: int = 4,
        checks: Sequence[str] = (),
        params: SamplingParams | None = None,
        use_gate: bool = True,
    ) -> None:
        unknown = [check for check in checks if check not in CHECKS]
        if unknown:
            raise PuyuError(f"unknown checks {unknown} (known: {', '.join(CHECKS)})")
        if k < 1:
            raise PuyuError(f"k must be at least 1, got {k}")
        self.kb = kb
        self.client = client
        self.k = k
        self.checks = tuple(checks)
        self.params = params or SamplingParams(max_tokens=384, temperature=0.0)
        self.use_gate = use_gate

    def prepare(self, question: str, extra_signals: dict[str, float] | None = None) -> Prepared:
        """Retrieve and apply the gate (no model call; an LLM relevance score comes in `extra_signals`)."""
        calibration = self.kb.snapshot.calibration if self.use_gate else None
        gate = "calibrated" if calibration else ("off (not calibrated)" if self.use_gate else "off (--no-gate)")
        if not self.kb.chunks:
            return Prepared(question, [], 0.0, True, "empty_kb", gate)
        hits = self.kb.search(question, k=self.k)
        if calibration:
            accepted, score = accepts(calibration, {**self.kb.signals(question), **(extra_signals or {})})
            if not accepted:
                return Prepared(question, hits, score, True, "unrelated", gate)
        else:
            score = max((hit.dense if hit.dense is not None else hit.bm25 for hit in hits), default=0.0)
        if not hits:
            return Prepared(question, [], score, True, "no_search_result", gate)
        return Prepared(question, hits, score, False, None, gate)

    async def _check(self, kind: str, question: str, hits: list[Hit], answer: str) -> int:
        return await llm_check(self.client, kind, question, hits, answer)

    async def astream(self, question: str, history: list[dict] | None = None) -> AsyncIterator[str | Answer]:
        """Text pieces of the answer as the model writes them, then the finished `Answer`.

        Args:
            question: the user's question.
            history: earlier turns (OpenAI messages) of a conversation, without sources.
        """
        calibration = self.kb.snapshot.calibration if self.use_gate else None
        extra: dict[str, float] = {}
        if calibration and "llm" in calibration["features"] and self.kb.chunks:
            # A gate calibrated with the model's relevance score needs it before it decides.
            hits = await asyncio.to_thread(self.kb.search, question, self.k)
            extra["llm"] = float(await self._check("relevance", question, hits, ""))
        prepared = await asyncio.to_thread(self.prepare, question, extra)
        answer = Answer(question, prepared.rejected, prepared.reason, prepared.score, gate=prepared.gate)
        if prepared.rejected:
            yield answer
            return
        if "relevance" in self.checks:
            answer.checks["relevance"] = await self._check("relevance", question, prepared.hits, "")
            answer.reason = check_fails("relevance", answer.checks["relevance"])
            if answer.reason:
                answer.rejected = True
                yield answer
                return
        pieces = []
        async for delta in self.client.astream_chat(answer_messages(question, prepared.hits, history), self.params):
            if delta.content:
                pieces.append(delta.content)
                yield delta.content
        text = "".join(pieces).strip()
        for kind in ("unknown", "safety"):
            if kind in self.checks and not answer.rejected:
                answer.checks[kind] = await self._check(kind, question, prepared.hits, text)
                answer.reason = check_fails(kind, answer.checks[kind])
                answer.rejected = answer.reason is not None
        answer.answer = "" if answer.rejected else text
        answer.citations = [] if answer.rejected else citations_for(text, prepared.hits)
        yield answer

    async def aask(self, question: str, history: list[dict] | None = None) -> Answer:
        """The finished answer to one question."""
        async for item in self.astream(question, history):
            if isinstance(item, Answer):
                return item
        raise AssertionError("astream ends with an Answer")

    def ask(self, question: str, history: list[dict] | None = None) -> Answer:
        """`aask` for callers without an event loop."""
        return asyncio.run(self.aask(question, history))
