"""Deep search (MindSearch-style): a planner splits a question into a graph of sub-questions, searchers answer
them in parallel with `[[n]]` citations over local or web sources, and a writer gives one cited answer.

    search = DeepSearch(load_client("models/x"), open_backend("local:kb/docs"))
    async for event in search.run("Who ..."):   # NodeEvent, NodeToken, NodeDone, Token, References, Answer, Error
        print(event.to_dict())
"""

from __future__ import annotations

from puyu.search.backends import SearchBackend, SearchResult, open_backend
from puyu.search.events import (
    Answer,
    Error,
    NodeDone,
    NodeEvent,
    NodeToken,
    Reference,
    References,
    SearchEvent,
    Token,
)
from puyu.search.graph import Node, PlanError, PlanGraph
from puyu.search.run import DeepSearch, SearchConfig, collect
from puyu.search.searcher import SearcherConfig

__all__ = [
    "Answer",
    "DeepSearch",
    "Error",
    "Node",
    "NodeDone",
    "NodeEvent",
    "NodeToken",
    "PlanError",
    "PlanGraph",
    "Reference",
    "References",
    "SearchBackend",
    "SearchConfig",
    "SearchEvent",
    "SearchResult",
    "SearcherConfig",
    "Token",
    "collect",
    "open_backend",
]
