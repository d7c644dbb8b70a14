"""Multi-hop QA over the quickstart world: no retrieval vs one-shot retrieval vs deep search.

The world's facts are written one document per person, city and country (`puyu.search.multihop`), so a
2-hop question ("the job of X's friend") needs two documents and a 3-hop one three. Three modes answer each
question with the same model: `none` (the question alone), `retrieval` (the top `--k` chunks for the question,
one search), `search` (`DeepSearch` over the same knowledge base). Reported per mode and hop count: accuracy
(the answer in the reply as whole words), nodes, chunks read, wall time.

    .venv/bin/python benchmarks/search_multihop.py --model runs/quickstart/stages/sft-*/model --count 40
    .venv/bin/python benchmarks/search_multihop.py --model http://127.0.0.1:8000 --kb local:kb/world

`--kb` names a knowledge base (default: the documents written to a temporary folder, indexed with BM25).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from machine import machine_info
from puyu.client import load_client
from puyu.generation.sampling import SamplingParams
from puyu.pipeline.world import World, build_world
from puyu.search import DeepSearch, SearchConfig, SearcherConfig, collect
from puyu.search.backends import open_backend
from puyu.search.events import Answer
from puyu.search.multihop import is_correct, multihop_questions, write_documents

ANSWER = "Answer the question in a few words.\n\n{context}Question: {question}"


async def one_shot(client: Any, backend: Any, question: str, k: int) -> tuple[str, int]:
    results = await backend.search(question, k)
    context = "".join(f"[{i}] {r.text or r.snippet}\n" for i, r in enumerate(results, start=1))
    prompt = ANSWER.format(context=f"Sources:\n{context}\n" if context else "", question=question)
    reply = await client.acomplete_chat(
        [{"role": "user", "content": prompt}], SamplingParams(max_tokens=48, temperature=0)
    )
    return reply.content, len(results)


async def ask(mode: str, client: Any, backend: Any, question: str, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    nodes = read = 0
    if mode == "none":
        prompt = ANSWER.format(context="", question=question)
        reply = (
            await client.acomplete_chat(
                [{"role": "user", "content": prompt}], SamplingParams(max_tokens=48, temperature=0)
            )
        ).content
    elif mode == "retrieval":
        reply, read = await one_shot(client, backend, question, args.k)
    else:
        config = SearchConfig(
            max_nodes=args.max_nodes,
            max_turns=3,
            concurrency=4,
            plan_tokens=256,
            answer_tokens=96,
            searcher=SearcherConfig(queries=0, pages=3, max_tokens=96),
        )
        events = await collect(DeepSearch(client, backend, config), question)
        final = next((e for e in events if isinstance(e, Answer)), None)
        reply = final.content if final else ""
        nodes, read = (final.nodes, final.pages_read) if final else (0, 0)
    return {"reply": reply, "nodes": nodes, "read": read, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder or an OpenAI-compatible URL")
    parser.add_argument("--world", default=None, help="a quickstart world.json (default: build one from --seed)")
    parser.add_argument("--size", default="default", choices=("tiny", "default"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--k", type=int, default=3, help="chunks for one-shot retrieval")
    parser.add_argument("--max-nodes", type=int, default=4)
    parser.add_argument("--modes", default="none,retrieval,search")
    parser.add_argument("--kb", default=None, help="a backend spec (default: the world's documents, BM25)")
    parser.add_argument("--out", default=None, help="write every reply here (JSON)")
    args = parser.parse_args()

    world = World.load(args.world) if args.world else build_world(args.seed, args.size)
    questions = multihop_questions(world, args.count, seed=args.seed)
    folder = Path(tempfile.mkdtemp(prefix="multihop-"))
    write_documents(world, folder)
    backend = open_backend(args.kb or f"local:{folder}")
    client = load_client(args.model, chat=True)

    rows: list[dict[str, Any]] = []
    for mode in args.modes.split(","):
        for q in questions:
            result = asyncio.run(ask(mode, client, backend, q.question, args))
            rows.append({"mode": mode, **q.to_dict(), **result, "correct": is_correct(result["reply"], q.answer)})
            print(f"{mode} {q.hops}-hop {rows[-1]['correct']} {result['seconds']:.1f}s", file=sys.stderr, flush=True)

    print(json.dumps(machine_info([]) | {"model": args.model, "count": args.count}))
    print("| mode | hops | accuracy | nodes | chunks read | seconds per question |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["mode"], row["hops"])].append(row)
    for (mode, hops), group in groups.items():
        n = len(group)

        def mean(key: str, rows: list[dict[str, Any]] = group, n: int = n) -> float:
            return sum(r[key] for r in rows) / n

        print(
            f"| {mode} | {hops} | {mean('correct'):.1%} | {mean('nodes'):.1f} | {mean('read'):.1f} "
            f"| {mean('seconds'):.2f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
