"""Searcher parallelism: wall time of one search against the number of nodes, nodes run at once vs one by one.

The model and the backend are stand-ins with fixed latencies (a model call `--model-ms`, a search or page read
`--backend-ms`), so what is timed is puyu's scheduling: the planner's one turn adds N independent nodes, each
writes no queries (the question is searched), reads its results and answers. Sequential (`concurrency=1`,
MindSearch's behaviour with one worker) and bounded-parallel runs go side by side; the ratio is the speed-up.

    .venv/bin/python benchmarks/search_parallel.py --nodes 1,2,4,8,16 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator

from machine import machine_info
from puyu.client import ChatDelta, ChatResult
from puyu.search import DeepSearch, SearchConfig, SearcherConfig, SearchResult, collect


class LatencyClient:
    """Every model call takes `seconds`; the planner adds `nodes` independent sub-questions."""

    name, max_length, is_chat = "latency", 4096, True

    def __init__(self, nodes: int, seconds: float) -> None:
        self.nodes, self.seconds = nodes, seconds

    def reply(self, messages: list[dict]) -> str:
        if messages[0]["content"].startswith("You plan"):
            if "No sub-questions" not in messages[-1]["content"]:
                return '{"nodes": [], "respond": true}'
            return json.dumps({"nodes": [{"id": f"n{i}", "question": f"fact {i}?"} for i in range(self.nodes)]})
        return "An answer [[1]]."

    async def acomplete_chat(self, messages: list[dict], params: object, tools: object = None) -> ChatResult:
        await asyncio.sleep(self.seconds)
        return ChatResult(self.reply(messages))

    async def astream_chat(
        self, messages: list[dict], params: object, tools: object = None
    ) -> AsyncIterator[ChatDelta]:
        await asyncio.sleep(self.seconds)
        yield ChatDelta(content=self.reply(messages), finish_reason="stop")


class LatencyBackend:
    name = "latency"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def search(self, query: str, k: int) -> list[SearchResult]:
        await asyncio.sleep(self.seconds)
        return [SearchResult(title=f"{query} {i}", url=f"https://x.example/{query}/{i}") for i in range(k)]

    async def read(self, result: SearchResult) -> str:
        await asyncio.sleep(self.seconds)
        return f"text of {result.url}"


def timed(nodes: int, concurrency: int, model_s: float, backend_s: float) -> float:
    config = SearchConfig(max_nodes=max(nodes, 1), concurrency=concurrency, searcher=SearcherConfig(queries=0))
    search = DeepSearch(LatencyClient(nodes, model_s), LatencyBackend(backend_s), config)
    start = time.perf_counter()
    asyncio.run(collect(search, "q"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,4,8,16")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model-ms", type=float, default=200.0)
    parser.add_argument("--backend-ms", type=float, default=100.0)
    args = parser.parse_args()
    model_s, backend_s = args.model_ms / 1000, args.backend_ms / 1000
    print(json.dumps(machine_info([])))
    print(f"| nodes | one at a time (s) | concurrency {args.concurrency} (s) | speed-up |")
    print("| ---: | ---: | ---: | ---: |")
    for nodes in [int(n) for n in args.nodes.split(",")]:
        sequential = timed(nodes, 1, model_s, backend_s)
        parallel = timed(nodes, args.concurrency, model_s, backend_s)
        print(f"| {nodes} | {sequential:.2f} | {parallel:.2f} | {sequential / parallel:.2f}x |")


if __name__ == "__main__":
    main()
