"""A deep search: plan → searchers in parallel → more plan → cited final answer, as a stream of events.

`DeepSearch.run(question)` is an async generator of `SearchEvent`s; the CLI, `POST /v1/search`, `/solve` and the
chat facade only render them. Closing the generator early (a client that goes away) cancels every running node
and their model requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from puyu.client import ModelClient
from puyu.errors import one_line
from puyu.generation.sampling import SamplingParams
from puyu.search import prompts
from puyu.search.backends.base import SearchBackend
from puyu.search.citations import renumbered_reply
from puyu.search.events import Answer, Error, NodeDone, NodeEvent, References, SearchEvent, Token
from puyu.search.graph import Node, PlanGraph
from puyu.search.planner import Planner
from puyu.search.searcher import Searcher, SearcherConfig, SharedSources


@dataclass
class SearchConfig:
    """Budgets of one search.

    Args:
        max_nodes: most sub-questions in all.
        max_turns: most planner turns.
        concurrency: most nodes searching at once.
        searcher: the per-node budget (queries, results, pages, timeout).
        answer_tokens: most tokens of the final answer.
        plan_tokens: most tokens of one planner reply.
    """

    max_nodes: int = 8
    max_turns: int = 4
    concurrency: int = 4
    searcher: SearcherConfig = field(default_factory=SearcherConfig)
    answer_tokens: int = 512
    plan_tokens: int = 512


class DeepSearch:
    """Answers questions with `client` (every model call) over `backend` (every search and read).

    Args:
        client: the model client (`puyu.client.load_client`).
        backend: a `SearchBackend` (see `puyu.search.backends.open_backend`).
        config: the budgets.
    """

    def __init__(self, client: ModelClient, backend: SearchBackend, config: SearchConfig | None = None) -> None:
        self.client = client
        self.backend = backend
        self.config = config or SearchConfig()
        self.last_stats: dict[str, object] = {}

    async def run(self, question: str) -> AsyncIterator[SearchEvent]:
        """The events of answering `question`, ending with `References` and `Answer` (or an `Error`)."""
        started = time.monotonic()
        graph = PlanGraph(self.config.max_nodes)
        sources = SharedSources(self.backend)
        queue: asyncio.Queue[SearchEvent] = asyncio.Queue()
        slots = asyncio.Semaphore(max(1, self.config.concurrency))
        searcher = Searcher(self.client, sources, self.config.searcher, queue.put_nowait)
        planner = Planner(self.client, self.config.plan_tokens)
        tasks: dict[str, asyncio.Task[None]] = {}
        try:
            for _ in range(self.config.max_turns):
                attempt = await planner.next_turn(question, graph)
                for node in attempt.turn.nodes:
                    graph.add(node)
                    yield NodeEvent.of(node)
                for node in attempt.turn.nodes:
                    waits = [tasks[d] for d in node.depends_on if d in tasks]
                    tasks[node.id] = asyncio.create_task(
                        self._run_node(node, question, graph, waits, searcher, slots, queue)
                    )
                turn_tasks = [tasks[n.id] for n in attempt.turn.nodes]
                while turn_tasks and not all(t.done() for t in turn_tasks):
                    getter = asyncio.ensure_future(queue.get())
                    try:
                        await asyncio.wait({getter, *turn_tasks}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        got = getter.done()
                        if not got:
                            getter.cancel()  # a cancelled get leaves its item in the queue (drained below)
                    if got:
                        yield getter.result()
                while not queue.empty():
                    yield queue.get_nowait()
                for task in turn_tasks:
                    task.result()  # a bug in a node (not a backend failure) surfaces here
                if attempt.turn.respond or not attempt.turn.nodes or len(graph) >= graph.max_nodes:
                    break
            async for event in self._final(question, graph, sources, started):
                yield event
            seconds = time.monotonic() - started
            self.last_stats = {
                "nodes": len(graph),
                "pages_read": sources.pages_read,
                "seconds": round(seconds, 3),
                "errors": list(sources.errors),
            }
        except Exception as exc:  # the run fails as one event; the caller's stream stays well-formed
            yield Error(f"search failed: {one_line(exc)}")
        finally:
            # Everything is cancelled before the first await: a server may cancel this cleanup itself.
            for task in tasks.values():
                task.cancel()
            sources.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    async def _run_node(
        self,
        node: Node,
        question: str,
        graph: PlanGraph,
        waits: list[asyncio.Task[None]],
        searcher: Searcher,
        slots: asyncio.Semaphore,
        queue: asyncio.Queue[SearchEvent],
    ) -> None:
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        async with slots:
            node.state = "running"
            queue.put_nowait(NodeEvent.of(node))
            try:
                parents = [graph.nodes[d] for d in node.depends_on]
                node.answer = await asyncio.wait_for(
                    searcher.answer(node, question, parents), self.config.searcher.timeout
                )
                node.state = "done"
            except asyncio.TimeoutError:
                node.state, node.answer = "failed", f"(no answer: the node ran past {self.config.searcher.timeout:g} s)"
            except Exception as exc:  # one failing node (a model error, a broken page) does not stop the others
                node.state, node.answer = "failed", f"(no answer: {one_line(exc)})"
            queue.put_nowait(NodeEvent.of(node))
            queue.put_nowait(NodeDone(node.id, node.answer))

    async def _final(
        self, question: str, graph: PlanGraph, sources: SharedSources, started: float
    ) -> AsyncIterator[SearchEvent]:
        answers = "\n\n".join(
            f"[{n.id}] {n.question}\n{n.answer if n.state == 'done' else '(no answer)'}" for n in graph.nodes.values()
        )
        messages = [
            {"role": "system", "content": prompts.FINAL_SYSTEM},
            {"role": "user", "content": prompts.FINAL_USER.format(question=question, answers=answers)},
        ]
        final = sources.citations.final()
        params = SamplingParams(max_tokens=self.config.answer_tokens, temperature=0)
        pieces: list[str] = []
        async for text in renumbered_reply(self.client, messages, params, final):
            pieces.append(text)
            yield Token(text)
        yield References(final.references())
        yield Answer(
            "".join(pieces),
            nodes=len(graph),
            pages_read=sources.pages_read,
            seconds=round(time.monotonic() - started, 3),
        )


async def collect(search: DeepSearch, question: str) -> list[SearchEvent]:
    """Every event of one search (for scripts and tests)."""
    return [event async for event in search.run(question)]
