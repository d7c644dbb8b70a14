"""A searcher answers one node: write queries, search, select, read, answer with `[[n]]` citations.

Searches and page reads are shared by all the nodes of one search (`SharedSources`): a query two nodes write
is sent once, a page two nodes pick is read once, and both cite it with the same global number.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from puyu.client import ModelClient
from puyu.generation.sampling import SamplingParams
from puyu.search import prompts
from puyu.search.backends.base import BackendError, SearchBackend, SearchResult
from puyu.search.citations import Citations, MarkerStream, renumbered_reply
from puyu.search.events import NodeToken, SearchEvent
from puyu.search.graph import Node

MAX_QUERY_CHARS = 200


@dataclass
class SearcherConfig:
    """Per-node budget.

    Args:
        queries: most search queries a node writes (0: search the question as asked, no model call).
        results: results asked of the backend per query.
        pages: most results a node reads.
        select: let the model pick which results to read (else the first `pages`).
        page_chars: characters of each page shown to the model.
        max_tokens: most tokens of a node's answer.
        timeout: seconds a node may take in all.
    """

    queries: int = 2
    results: int = 5
    pages: int = 3
    select: bool = True
    page_chars: int = 2000
    max_tokens: int = 384
    timeout: float = 120.0


@dataclass
class SharedSources:
    """What the nodes of one search share: the backend's answers, the pages read, the citation numbers."""

    backend: SearchBackend
    citations: Citations = field(default_factory=Citations)
    searches: dict[tuple[str, int], asyncio.Future[list[SearchResult]]] = field(default_factory=dict)
    pages: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def pages_read(self) -> int:
        return sum(1 for f in self.pages.values() if f.done() and not f.cancelled() and f.exception() is None)

    async def _once(self, table: dict, key: object, make: Callable[[], Awaitable]) -> object:
        future = table.get(key)
        if future is None or (future.done() and (future.cancelled() or future.exception() is not None)):
            future = asyncio.ensure_future(make())
            table[key] = future
        return await asyncio.shield(future)

    async def search(self, query: str, k: int) -> list[SearchResult]:
        folded = " ".join(query.lower().split())
        return await self._once(self.searches, (folded, k), lambda: self.backend.search(query, k))  # type: ignore[return-value]

    async def read(self, result: SearchResult) -> str:
        if result.text is not None:  # kb chunks come with their text
            self.pages.setdefault(result.key, _done(result.text))
            return result.text
        return await self._once(self.pages, result.key, lambda: self.backend.read(result))  # type: ignore[return-value]

    def cancel(self) -> None:
        for future in [*self.searches.values(), *self.pages.values()]:
            future.cancel()


def _done(value: str) -> asyncio.Future[str]:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def parse_queries(text: str, limit: int) -> list[str]:
    """Queries from a model's reply: one a line, list marks and quotes removed, duplicates dropped."""
    queries: list[str] = []
    for line in text.splitlines():
        query = re.sub(r"^\s*(?:[-*•]|\d+[.)]|query\s*\d*:)\s*", "", line, flags=re.IGNORECASE).strip().strip("\"'`")
        if query and len(query) <= MAX_QUERY_CHARS and query.lower() not in (q.lower() for q in queries):
            queries.append(query)
        if len(queries) >= limit:
            break
    return queries


def parse_selection(text: str, count: int, limit: int) -> list[int]:
    """0-based indices from a reply like "1, 3" (out-of-range and repeated numbers dropped)."""
    picked: list[int] = []
    for number in re.findall(r"\d+", text):
        index = int(number) - 1
        if 0 <= index < count and index not in picked:
            picked.append(index)
        if len(picked) >= limit:
            break
    return picked


class Searcher:
    """Answers nodes with `client` over `sources`; `emit` receives the node's token events."""

    def __init__(
        self, client: ModelClient, sources: SharedSources, config: SearcherConfig, emit: Callable[[SearchEvent], None]
    ) -> None:
        self.client = client
        self.sources = sources
        self.config = config
        self.emit = emit

    async def _ask(self, content: str, max_tokens: int = 128) -> str:
        reply = await self.client.acomplete_chat(
            [{"role": "user", "content": content}], SamplingParams(max_tokens=max_tokens, temperature=0)
        )
        return reply.content

    async def queries(self, node: Node, context: str) -> list[str]:
        if self.config.queries <= 0:
            return [node.question]
        reply = await self._ask(prompts.QUERIES.format(n=self.config.queries, context=context, question=node.question))
        return parse_queries(reply, self.config.queries) or [node.question]

    async def gather(self, queries: list[str]) -> list[SearchResult]:
        """Every query's results, merged in rank order, each source once; backend failures are noted, not raised."""
        replies = await asyncio.gather(
            *(self.sources.search(q, self.config.results) for q in queries), return_exceptions=True
        )
        merged: dict[str, SearchResult] = {}
        for query, reply in zip(queries, replies, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, (BackendError, asyncio.TimeoutError)):
                    raise reply
                self.sources.errors.append(f"search {query!r}: {reply}")
                continue
            for result in reply:
                merged.setdefault(result.key, result)
        return list(merged.values())

    async def select(self, node: Node, results: list[SearchResult]) -> list[SearchResult]:
        if len(results) <= self.config.pages or not self.config.select:
            return results[: self.config.pages]
        listing = "\n".join(f"[{i}] {r.title}\n{r.snippet[:200]}" for i, r in enumerate(results, start=1))
        reply = await self._ask(prompts.SELECT.format(question=node.question, results=listing), max_tokens=32)
        picked = parse_selection(reply, len(results), self.config.pages)
        return [results[i] for i in picked] if picked else results[: self.config.pages]

    async def read(self, chosen: list[SearchResult]) -> list[tuple[SearchResult, str]]:
        texts = await asyncio.gather(*(self.sources.read(r) for r in chosen), return_exceptions=True)
        read: list[tuple[SearchResult, str]] = []
        for result, text in zip(chosen, texts, strict=True):
            if isinstance(text, BaseException):
                if not isinstance(text, (BackendError, asyncio.TimeoutError)):
                    raise text
                self.sources.errors.append(f"read {result.key}: {text}")
                text = result.snippet  # the snippet is still evidence
            if text.strip():
                read.append((result, text))
        return read

    async def answer(self, node: Node, topic: str, parents: list[Node]) -> str:
        """The node's answer, citations in global numbers; its tokens are emitted as they come."""
        history = "".join(prompts.HISTORY.format(question=p.question, answer=p.answer or "(none)") for p in parents)
        context = "".join(f"Known: {p.question} {p.answer}\n" for p in parents if p.answer)
        results = await self.gather(await self.queries(node, context))
        read = await self.read(await self.select(node, results))
        if not read:
            return "No sources were found for this question."
        shown = [result for result, _ in read]
        sources = "\n\n".join(
            f"[{i}] {r.title}\n{text[: self.config.page_chars]}" for i, (r, text) in enumerate(read, start=1)
        )
        messages = [
            {"role": "system", "content": prompts.SEARCHER_SYSTEM},
            {
                "role": "user",
                "content": prompts.SEARCHER_USER.format(
                    topic=topic, history=history, question=node.question, sources=sources
                ),
            },
        ]
        markers = MarkerStream(self.sources.citations.local(shown))
        params = SamplingParams(max_tokens=self.config.max_tokens, temperature=0)
        pieces: list[str] = []
        async for text in renumbered_reply(self.client, messages, params, markers):
            pieces.append(text)
            self.emit(NodeToken(node.id, text))
        return "".join(pieces).strip()
