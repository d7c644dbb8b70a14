"""MindSearch's `/solve` stream shape, rendered from puyu's search events.

Each SSE `data:` is `{"current_node": str | null, "response": {...}}`, as MindSearch's React app reads it:
`response.formatted.adjacency_list` draws the mind map (`{parent: [{"id", "name", "state"}]}`, state 1 running,
2 not started, 3 done; `root` is the question and `response` the final answer), `response.formatted.node[name]`
fills a node's panel (`content` is its sub-question, `response.formatted.thought` its answer so far,
`response.content` the JSON of its sources), `response.formatted.thought` with no `current_node` is the final
answer so far, `response.formatted.ref2url` its references, and `response.stream_state == 0` ends the chat.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from puyu.search.events import Answer, Error, NodeDone, NodeEvent, NodeToken, References, SearchEvent, Token

STREAMING, ENDED = 1, 0
_STATE_CODES = {"pending": 2, "running": 1, "done": 3, "failed": 3}


class SolveRenderer:
    """Turns the events of one search into `/solve` payloads (it keeps the graph and the texts so far)."""

    def __init__(self, question: str) -> None:
        self.question = question
        self.nodes: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, str] = {}
        self.edge_ids: dict[tuple[str, str], str] = {}
        self.final = ""
        self.ref2url: dict[str, str] = {}
        self.finished = False

    def adjacency(self) -> dict[str, list[dict[str, Any]]]:
        """Edges root → nodes without parents, parent → child, and (once answering) leaves → response."""
        adjacency: dict[str, list[dict[str, Any]]] = {"root": []}
        for node in self.nodes.values():
            parents = node["depends_on"] or ["root"]
            for parent in parents:
                adjacency.setdefault(parent, []).append(self._edge(parent, node["id"], _STATE_CODES[node["state"]]))
        if self.final or self.finished:
            has_children = {parent for parent, edges in adjacency.items() if edges}
            for leaf in [n for n in self.nodes if n not in has_children] or ["root"]:
                adjacency.setdefault(leaf, []).append(self._edge(leaf, "response", 3 if self.finished else 1))
        return adjacency

    def _edge(self, start: str, end: str, state: int) -> dict[str, Any]:
        edge_id = self.edge_ids.setdefault((start, end), str(uuid.uuid4()))
        return {"id": edge_id, "name": end, "state": state}

    def _node_payload(self, node_id: str, state: int) -> dict[str, Any]:
        node = self.nodes[node_id]
        node_view = {
            "content": node["question"],
            "type": "searcher",
            "response": {
                "content": "{}",
                "formatted": {"thought": self.answers.get(node_id, "")},
                "stream_state": state,
            },
        }
        formatted = {"node": {node_id: node_view}, "adjacency_list": self.adjacency()}
        return {"current_node": node_id, "response": {"formatted": formatted, "stream_state": STREAMING}}

    def _planner_payload(self, state: int) -> dict[str, Any]:
        formatted = {"thought": self.final, "adjacency_list": self.adjacency(), "ref2url": self.ref2url}
        return {
            "current_node": None,
            "response": {"content": self.final, "formatted": formatted, "stream_state": state},
        }

    def render(self, event: SearchEvent) -> dict[str, Any] | None:
        """The payload for `event` (None for events `/solve` has no place for)."""
        if isinstance(event, NodeEvent):
            self.nodes[event.node["id"]] = event.node
            return self._node_payload(event.node["id"], STREAMING)
        if isinstance(event, NodeToken):
            self.answers[event.id] = self.answers.get(event.id, "") + event.content
            return self._node_payload(event.id, STREAMING) if event.id in self.nodes else None
        if isinstance(event, NodeDone):
            self.answers[event.id] = event.answer
            return self._node_payload(event.id, ENDED) if event.id in self.nodes else None
        if isinstance(event, Token):
            self.final += event.content
            return self._planner_payload(STREAMING)
        if isinstance(event, References):
            self.ref2url = {str(r.n): r.url or f"{r.source}#{r.start}-{r.end}" for r in event.references}
            return self._planner_payload(STREAMING)
        if isinstance(event, Answer):
            self.final, self.finished = event.content, True
            return self._planner_payload(ENDED)
        if isinstance(event, Error):
            return {"error": {"msg": "An error occurred while generating the response.", "details": event.message}}
        return None


def solve_question(inputs: Any) -> str:
    """The question of a `/solve` body: `inputs` is a string or a list of chat messages (the last user one)."""
    if isinstance(inputs, str):
        return inputs
    if isinstance(inputs, list):
        for message in reversed(inputs):
            if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
                return message["content"]
    return ""


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False)
