"""The events a search yields, in the shape `POST /v1/search` streams them (`to_dict()` is the SSE payload)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from puyu.search.graph import Node


@dataclass
class NodeEvent:
    """A node was added, or its state changed (a snapshot: later changes make new events)."""

    node: dict[str, Any]

    @classmethod
    def of(cls, node: Node) -> NodeEvent:
        return cls(node.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"type": "node", "node": dict(self.node)}


@dataclass
class NodeToken:
    """A piece of a node's answer as it streams."""

    id: str
    content: str
    type: str = field(default="node_token", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class NodeDone:
    """A node's whole answer (its citations already numbered as in the final answer)."""

    id: str
    answer: str
    type: str = field(default="node_done", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Token:
    """A piece of the final answer."""

    content: str
    type: str = field(default="token", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Reference:
    """One source the final answer cites as `[[n]]`: a web page (url) or a knowledge-base span (source, start, end)."""

    n: int
    title: str
    url: str | None = None
    source: str | None = None
    start: int | None = None
    end: int | None = None


@dataclass
class References:
    references: list[Reference]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "references", "references": [asdict(r) for r in self.references]}


@dataclass
class Answer:
    """The final answer (the tokens joined) and what it took: nodes run, pages read, seconds."""

    content: str
    nodes: int = 0
    pages_read: int = 0
    seconds: float = 0.0
    type: str = field(default="answer", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Error:
    message: str
    type: str = field(default="error", init=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SearchEvent = NodeEvent | NodeToken | NodeDone | Token | References | Answer | Error
