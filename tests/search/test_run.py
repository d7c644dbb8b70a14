"""A whole search with a scripted model and an in-memory backend: the events, the graph, citations renumbered
across nodes, shared searches and reads, bounded concurrency, failures and timeouts, cancellation."""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes import PAGES, PLAN, MemoryBackend, ScriptedClient, kind

from puyu.search import DeepSearch, SearchConfig, SearcherConfig, collect
from puyu.search.events import Answer, Error, NodeDone, NodeEvent, NodeToken, References, Token


def script(messages: list[dict]) -> str:
    step, last = kind(messages), messages[-1]["content"]
    if step == "plan":
        return json.dumps(PLAN) if "No sub-questions" in last else '{"nodes": [], "respond": true}'
    if step == "queries":
        return "1. birthplace\n2. " + last.rsplit("Question: ", 1)[1].split()[-1]
    if step == "node":
        # Each node cites every source it was shown; [[9]] names none of them and must vanish.
        shown = last.split("## Sources", 1)[1].count("\n[")
        return "From the sources: " + "".join(f"[[{i}]]" for i in range(1, shown + 1)) + " and [[9]]."
    if step == "final":
        return "Alice was born in Lyon [[2]][[1]], on the Rhone [[3]]; unknown [[7]]."
    return "1"


def test_search_end_to_end() -> None:
    backend = MemoryBackend(PAGES)
    client = ScriptedClient(script)
    events = asyncio.run(collect(DeepSearch(client, backend), "Which river flows through Alice's birthplace?"))
    added = [e.node for e in events if isinstance(e, NodeEvent) and e.node["state"] == "pending"]
    assert [(n["id"], n["depends_on"]) for n in added] == [("born", []), ("bob", []), ("river", ["born"])]
    states = {
        n: [e.node["state"] for e in events if isinstance(e, NodeEvent) and e.node["id"] == n]
        for n in ("born", "river")
    }
    assert states == {"born": ["pending", "running", "done"], "river": ["pending", "running", "done"]}
    # The dependent node starts after its parent is done, and sees its answer.
    born_done = next(i for i, e in enumerate(events) if isinstance(e, NodeDone) and e.id == "born")
    river_runs = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, NodeEvent) and e.node == {**e.node, "id": "river", "state": "running"}
    )
    assert born_done < river_runs
    river_prompt = next(
        m for m in client.calls if kind(m) == "node" and "Current Problem\nWhich river" in m[-1]["content"]
    )
    assert "## Historical Problem\nWhere was Alice born?" in river_prompt[-1]["content"]
    # Node tokens joined are the node's answer, with global numbers and the unknown marker dropped.
    done = {e.id: e.answer for e in events if isinstance(e, NodeDone)}
    for node_id, answer in done.items():
        assert "".join(e.content for e in events if isinstance(e, NodeToken) and e.id == node_id).strip() == answer
        assert "[[9]]" not in answer
    # Final: global [[2]][[1]] → [[1]][[2]] in order of appearance, [[3]] → [[3]], unknown [[7]] dropped.
    (answer,) = [e for e in events if isinstance(e, Answer)]
    assert "".join(e.content for e in events if isinstance(e, Token)) == answer.content
    assert answer.content == "Alice was born in Lyon [[1]][[2]], on the Rhone [[3]]; unknown ."
    (refs,) = [e.references for e in events if isinstance(e, References)]
    assert [r.n for r in refs] == [1, 2, 3]
    assert all(r.url in PAGES for r in refs)
    assert answer.nodes == 3 and answer.pages_read == len(set(backend.reads))
    assert isinstance(events[-1], Answer) and not any(isinstance(e, Error) for e in events)


def test_same_query_and_page_go_to_the_backend_once() -> None:
    backend = MemoryBackend(PAGES)
    asyncio.run(collect(DeepSearch(ScriptedClient(script), backend), "q"))
    assert len(backend.searches) == len(set(q.lower() for q in backend.searches))
    assert "birthplace" in backend.searches  # written by all three nodes
    assert len(backend.reads) == len(set(backend.reads))


def test_concurrency_is_bounded() -> None:
    plan = {"nodes": [{"id": f"n{i}", "question": f"fact number {i}?"} for i in range(6)]}

    def wide(messages: list[dict]) -> str:
        return json.dumps(plan) if kind(messages) == "plan" else script(messages)

    backend = MemoryBackend(PAGES, delay=0.05)
    config = SearchConfig(concurrency=2, searcher=SearcherConfig(queries=0))
    events = asyncio.run(collect(DeepSearch(ScriptedClient(wide), backend, config), "q"))
    assert backend.most_in_flight == 2
    running = 0
    most = 0
    for event in events:
        if isinstance(event, NodeEvent):
            running += {"running": 1, "done": -1, "failed": -1}.get(event.node["state"], 0)
            most = max(most, running)
    assert most == 2


def test_backend_failures_and_timeouts_fail_alone() -> None:
    failing = MemoryBackend(PAGES, fail=True)
    search = DeepSearch(ScriptedClient(script), failing)
    events = asyncio.run(collect(search, "q"))
    assert all(e.answer == "No sources were found for this question." for e in events if isinstance(e, NodeDone))
    assert isinstance(events[-1], Answer)
    assert search.last_stats["errors"]

    slow = MemoryBackend(PAGES, delay=5)
    config = SearchConfig(searcher=SearcherConfig(timeout=0.1))
    events = asyncio.run(collect(DeepSearch(ScriptedClient(script), slow, config), "q"))
    failed = [e.node["id"] for e in events if isinstance(e, NodeEvent) and e.node["state"] == "failed"]
    assert sorted(failed) == ["bob", "born", "river"]
    assert isinstance(events[-1], Answer)


def test_closing_the_stream_cancels_running_nodes() -> None:
    backend = MemoryBackend(PAGES, delay=30)
    client = ScriptedClient(script)

    async def leave_early() -> None:
        stream = DeepSearch(client, backend).run("q")
        async for event in stream:
            if isinstance(event, NodeEvent) and event.node["state"] == "running":
                break
        await stream.aclose()

    asyncio.run(asyncio.wait_for(leave_early(), 10))
    assert backend.cancelled >= 1 and backend.in_flight == 0
    assert client.open_streams == 0


def test_bad_plan_is_repaired_once_then_falls_back() -> None:
    replies = iter(['{"nodes": [{"id": "a", "question": "x?", "depends_on": ["zz"]}]}', json.dumps(PLAN)])

    def repaired(messages: list[dict]) -> str:
        if kind(messages) in ("plan", "repair") and "No sub-questions" in messages[1]["content"]:
            return next(replies)
        return script(messages)

    client = ScriptedClient(repaired)
    events = asyncio.run(collect(DeepSearch(client, MemoryBackend(PAGES)), "q"))
    repair = next(m for m in client.calls if kind(m) == "repair")
    assert "unknown node 'zz'" in repair[-1]["content"]
    assert {e.node["id"] for e in events if isinstance(e, NodeEvent)} == {"born", "bob", "river"}

    def hopeless(messages: list[dict]) -> str:
        return "I cannot plan." if kind(messages) in ("plan", "repair") else script(messages)

    events = asyncio.run(collect(DeepSearch(ScriptedClient(hopeless), MemoryBackend(PAGES)), "Where is Lyon?"))
    assert [e.node["question"] for e in events if isinstance(e, NodeEvent)][:1] == ["Where is Lyon?"]
    assert isinstance(events[-1], Answer)


def test_a_failing_model_ends_with_one_error_event() -> None:
    def broken(messages: list[dict]) -> str:
        raise RuntimeError("the model server went away")

    events = asyncio.run(collect(DeepSearch(ScriptedClient(broken), MemoryBackend(PAGES)), "q"))
    assert isinstance(events[-1], Error) and "went away" in events[-1].message


@pytest.mark.parametrize("turns", [1, 3])
def test_planning_is_incremental_until_respond_or_budget(turns: int) -> None:
    counter = iter(range(100))

    def one_more(messages: list[dict]) -> str:
        if kind(messages) == "plan":
            n = next(counter)
            return json.dumps({"nodes": [{"id": f"s{n}", "question": f"step {n} about lyon?"}]})
        return script(messages)

    config = SearchConfig(max_turns=turns, max_nodes=8)
    events = asyncio.run(collect(DeepSearch(ScriptedClient(one_more), MemoryBackend(PAGES), config), "q"))
    assert len([e for e in events if isinstance(e, NodeDone)]) == turns
