"""Test doubles for search: a model client whose replies a function scripts, and an in-memory backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from puyu.client import ChatDelta, ChatResult
from puyu.search.backends.base import BackendError, SearchResult

PAGES = {
    "https://w.example/alice-birthplace": "Alice Smith was born in Lyon.",
    "https://w.example/lyon-river": "Lyon lies on the Rhone and the Saone.",
    "https://w.example/bob-birthplace": "Bob Jones was born in Lyon too.",
}
PLAN = {
    "nodes": [
        {"id": "born", "question": "Where was Alice born?", "depends_on": []},
        {"id": "bob", "question": "Where was Bob born?", "depends_on": []},
        {"id": "river", "question": "Which river flows through Lyon?", "depends_on": ["BORN"]},
    ]
}


class ScriptedClient:
    """`reply(messages)` gives each turn's text; streamed turns arrive in 3-character pieces (so citation
    markers are cut across pieces)."""

    name = "scripted"
    max_length = 4096
    is_chat = True

    def __init__(self, reply: Callable[[list[dict]], str]) -> None:
        self.reply = reply
        self.calls: list[list[dict]] = []
        self.open_streams = 0

    async def acomplete_chat(self, messages: list[dict], params: object, tools: object = None) -> ChatResult:
        self.calls.append(messages)
        await asyncio.sleep(0)
        return ChatResult(content=self.reply(messages))

    async def astream_chat(
        self, messages: list[dict], params: object, tools: object = None
    ) -> AsyncIterator[ChatDelta]:
        self.calls.append(messages)
        text = self.reply(messages)
        self.open_streams += 1
        try:
            for i in range(0, len(text), 3):
                await asyncio.sleep(0)
                yield ChatDelta(content=text[i : i + 3])
            yield ChatDelta(finish_reason="stop")
        finally:
            self.open_streams -= 1


def kind(messages: list[dict] | str) -> str:
    """Which step asked (plan, repair, queries, select, node, final), from the messages or the rendered prompt."""
    text = messages if isinstance(messages, str) else "\n".join(m["content"] for m in messages)
    if "You plan web research" in text:
        return "repair" if "cannot run" in text else "plan"
    if "You answer one sub-question" in text:
        return "node"
    if "You write the answer" in text:
        return "final"
    if "search-engine queries" in text:
        return "queries"
    return "select"


class MemoryBackend:
    """Pages in a dict, found by any word of the query in their title; `delay` seconds per search."""

    name = "memory"

    def __init__(self, pages: dict[str, str], delay: float = 0.0, fail: bool = False) -> None:
        self.pages = pages
        self.delay = delay
        self.fail = fail
        self.searches: list[str] = []
        self.reads: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.cancelled = 0

    async def search(self, query: str, k: int) -> list[SearchResult]:
        self.searches.append(query)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        if self.fail:
            raise BackendError("memory: the engine is down")
        words = {w.strip("?.,").lower() for w in query.split()}
        hits = [url for url in self.pages if words & set(url.lower().split("/")[-1].split("-"))]
        return [SearchResult(title=url.split("/")[-1], snippet=self.pages[url][:40], url=url) for url in hits][:k]

    async def read(self, result: SearchResult) -> str:
        self.reads.append(result.url or "")
        return self.pages[result.url or ""]


QUESTION = "Which river flows through Alice's birthplace?"


def script(prompt: str) -> str | None:
    """The served test model's reply to each step (the engine's script hook: rendered prompt in, reply out)."""
    step = kind(prompt)
    if step == "plan":
        return json.dumps(PLAN) if "No sub-questions" in prompt else '{"nodes": [], "respond": true}'
    if step == "queries":
        return "birthplace\nLyon"
    if step == "node":
        shown = prompt.split("## Sources", 1)[1].count("\n[")
        return "Found: " + "".join(f"[[{i}]]" for i in range(1, shown + 1))
    if step == "final":
        return "Alice was born in Lyon [[2]][[1]]."
    return "1, 2"
