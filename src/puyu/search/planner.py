"""The planner: a model that writes the plan graph one JSON turn at a time, validated before anything runs.

Each turn sees the question and the answers so far and either adds nodes or asks for the final answer. A turn
that fails validation (not JSON, unknown dependency, cycle, over budget) is sent back once with the list of
problems; if the repaired turn fails too, the first turn falls back to asking the question itself as one node,
and a later turn to writing the answer, so a weak planner degrades to plain search instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from puyu.client import ModelClient
from puyu.generation.sampling import SamplingParams
from puyu.search import prompts
from puyu.search.graph import Node, PlanError, PlanGraph, PlanTurn, extract_json


@dataclass
class PlanAttempt:
    """What a planner turn produced, and the problems met on the way (for logs and tests)."""

    turn: PlanTurn
    problems: list[str] = field(default_factory=list)
    repaired: bool = False
    fell_back: bool = False


class Planner:
    """Asks `client` for the next planner turn.

    Args:
        client: the model client.
        max_tokens: most tokens of one planner reply.
    """

    def __init__(self, client: ModelClient, max_tokens: int = 512) -> None:
        self.client = client
        self.params = SamplingParams(max_tokens=max_tokens, temperature=0)

    def messages(self, question: str, graph: PlanGraph) -> list[dict]:
        system = prompts.PLANNER_SYSTEM.format(max_nodes=graph.max_nodes)
        if not graph.nodes:
            user = prompts.PLANNER_FIRST.format(question=question)
        else:
            answers = "\n".join(
                f"- [{n.id}] {n.question}\n  Answer: {n.answer or '(no answer found)'}" for n in graph.nodes.values()
            )
            user = prompts.PLANNER_NEXT.format(question=question, answers=answers, left=graph.max_nodes - len(graph))
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    async def next_turn(self, question: str, graph: PlanGraph) -> PlanAttempt:
        """The next validated turn (with one repair turn; a fallback when both fail)."""
        messages = self.messages(question, graph)
        problems: list[str] = []
        for attempt in range(2):
            reply = await self.client.acomplete_chat(messages, self.params)
            try:
                turn = graph.validate(extract_json(reply.content))
                return PlanAttempt(turn=turn, problems=problems, repaired=attempt == 1)
            except PlanError as error:
                problems.extend(error.problems)
                listed = "\n".join(f"- {p}" for p in error.problems)
                messages = [
                    *messages,
                    {"role": "assistant", "content": reply.content},
                    {"role": "user", "content": prompts.PLANNER_REPAIR.format(problems=listed)},
                ]
        if not graph.nodes:
            fallback = PlanTurn(nodes=[Node(id="q1", question=" ".join(question.split())[:500])], respond=False)
        else:
            fallback = PlanTurn(nodes=[], respond=True)
        return PlanAttempt(turn=fallback, problems=problems, repaired=True, fell_back=True)
