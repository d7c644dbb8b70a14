"""The knowledge base as a tool for agents (OpenAI function calling, and MCP servers that take the same spec).

`KbSearchTool(kb).spec` is the function description a model sees; `KbSearchTool(kb)(arguments)` runs a search
and returns the result as JSON text: the chunks with their source, id, span and text. Arguments come from a
model and are checked like any other untrusted input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .retrieval import KnowledgeBase

MAX_K = 10
MAX_QUERY_CHARS = 1024


class KbSearchTool:
    """Search one knowledge base.

    Args:
        kb: the opened knowledge base.
        name: the tool's name as the model sees it.
        description: what the knowledge base holds, for the model to decide when to search it.
    """

    def __init__(self, kb: KnowledgeBase, name: str = "kb_search", description: str | None = None) -> None:
        self.kb = kb
        self.name = name
        about = description or "the local knowledge base"
        self.spec = {
            "type": "function",
            "function": {
                "name": name,
                "description": f"Search {about} and return the most relevant passages with their sources.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "what to look for"},
                        "k": {"type": "integer", "description": f"how many passages (1-{MAX_K})", "default": 4},
                    },
                    "required": ["query"],
                },
            },
        }

    def __call__(self, arguments: dict[str, Any] | str) -> str:
        """Run the search; a bad argument is reported in the result, never raised."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return json.dumps({"error": "arguments are not valid JSON"})
        query = arguments.get("query") if isinstance(arguments, dict) else None
        if not isinstance(query, str) or not query.strip():
            return json.dumps({"error": "'query' must be a non-empty string"})
        k = arguments.get("k", 4)
        k = min(MAX_K, max(1, k)) if isinstance(k, int) and not isinstance(k, bool) else 4
        hits = self.kb.search(query[:MAX_QUERY_CHARS], k=k)
        results = [
            {
                "n": n,
                "source": hit.chunk.source,
                "chunk_id": hit.chunk.id,
                "start": hit.chunk.start,
                "end": hit.chunk.end,
                "text": hit.chunk.text,
            }
            for n, hit in enumerate(hits, start=1)
        ]
        return json.dumps({"results": results}, ensure_ascii=False)


def kb_agent_tool(path: str | Path, name: str = "kb_search") -> Any:
    """The knowledge base at `path` as a `puyu.agent` tool (for `puyu agent --kb` and `puyu mcp serve --kb`)."""
    from puyu.agent.tools import tool

    search = KbSearchTool(KnowledgeBase.open(path), name=name)

    def kb_search(query: str, k: int = 4) -> str:
        """Search the local knowledge base and return the most relevant passages with their sources.

        Args:
            query: what to look for.
            k: how many passages (1-10).
        """
        return search({"query": query, "k": k})

    return tool(kb_search, name=name)
